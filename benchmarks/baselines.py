"""The PyTorch eager baseline: the same checkpoint run by torch inside the service's Segmenter.

Only the runner differs from the served path (input policy, threshold, post-processing
and the HTTP app are the ONNX file's and the service's own), so the comparison isolates
onnxruntime against torch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from service.segmenter import Segmenter


def torch_segmenter(checkpoint: Path, served: Segmenter) -> Segmenter:
    """A Segmenter that runs the checkpoint's network in torch eager mode on the CPU, and
    otherwise does what `served` (loaded from the ONNX file) does; its card says so."""
    import torch

    from training.checkpoint import load_checkpoint
    from training.served import torch_segmenter as eager_segmenter

    trained = load_checkpoint(checkpoint)
    eager = eager_segmenter(
        trained,
        served.policy,
        served.threshold,
        served.min_area,
        decision_threshold=served.decision_threshold,
    )
    return Segmenter(
        eager.runner,
        served.policy,
        served.threshold,
        served.min_area,
        decision_threshold=served.decision_threshold,
        classes=served.classes,
        card=dataclasses.replace(served.card, version="pytorch-eager"),
        sha256=served.sha256,
        providers=[f"torch {torch.__version__} eager CPU, {torch.get_num_threads()} threads"],
        border=served.border,
    )
