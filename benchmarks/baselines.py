"""The PyTorch eager baseline: the same checkpoint run by torch inside the service's Segmenter.

Only the runner differs from the served path (preprocessing, postprocessing and the
HTTP app stay the service's own), so the comparison isolates onnxruntime against torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from service.segmenter import Segmenter


def torch_segmenter(checkpoint: Path, min_area: int) -> Segmenter:
    """A Segmenter whose runner is the checkpoint's network in torch eager mode on the CPU."""
    import torch

    from training.checkpoint import load_checkpoint
    from training.model import Probability

    trained = load_checkpoint(checkpoint)
    model = Probability(trained.net).eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch)).numpy()

    return Segmenter(
        run,
        trained.policy,
        trained.threshold,
        min_area,
        metadata={"model_version": "pytorch-eager"},
        providers=[f"torch {torch.__version__} eager CPU, {torch.get_num_threads()} threads"],
    )
