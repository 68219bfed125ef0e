"""The PyTorch eager baseline: the same checkpoint run by torch inside the service's Segmenter.

Only the runner differs from the served path (input policy, threshold, post-processing
and the HTTP app are the ONNX file's and the service's own), so the comparison isolates
onnxruntime against torch.
"""

from __future__ import annotations

from pathlib import Path

from service.segmenter import Segmenter


def torch_segmenter(checkpoint: Path, served: Segmenter) -> Segmenter:
    """A Segmenter that runs the checkpoint's network in torch eager mode on the CPU, and
    otherwise does what `served` does."""
    import torch

    from training import scoring
    from training.checkpoint import load_checkpoint

    trained = load_checkpoint(checkpoint)
    eager = scoring.torch_segmenter(trained.net, served.policy, served.threshold, served.min_area)
    eager.metadata = {"model_version": "pytorch-eager"}
    eager.providers = [f"torch {torch.__version__} eager CPU, {torch.get_num_threads()} threads"]
    return eager
