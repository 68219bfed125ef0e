"""How the pipeline serves the trained network: what `calibrate`, `evaluate` and `export`
share, so that no stage imports another.

The torch network runs inside the service's own Segmenter, so each stage scores exactly
what the API will answer; `calibrate` writes how (the pixel and decision thresholds, the
flip, min_area, border) and the later stages read it back from here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.framing import InputPolicy
from service.segmenter import Segmenter
from training.checkpoint import Trained, input_policy
from training.model import Probabilities

CALIBRATION = Path("reports/calibrate.json")
EVALUATION_DIR = Path("reports/evaluate")
EVALUATION_METRICS = EVALUATION_DIR / "metrics.json"


def served_segmenter(trained: Trained, path: Path = CALIBRATION) -> Segmenter:
    """The trained network in the service's Segmenter, run as `calibrate` chose."""
    chosen = read_calibration(path)
    policy = input_policy(trained.model_params, chosen["test_time_flip"])
    return torch_segmenter(
        trained,
        policy,
        chosen["threshold"],
        chosen["min_area"],
        decision_threshold=chosen["decision_threshold"],
        border=chosen["border"],
    )


def read_calibration(path: Path = CALIBRATION) -> dict[str, Any]:
    """What `calibrate` chose: the pixel and decision thresholds, min_area, border,
    test_time_flip, and the validation metrics."""
    if not path.is_file():
        raise SystemExit(f"error: no calibration at {path}; run `dvc repro calibrate` first.")
    return json.loads(path.read_text())


def read_evaluation(path: Path = EVALUATION_METRICS) -> dict[str, Any]:
    """The test metrics `evaluate` wrote."""
    if not path.is_file():
        raise SystemExit(f"error: no test metrics at {path}; run `dvc repro evaluate` first.")
    return json.loads(path.read_text())


def torch_segmenter(
    trained: Trained,
    policy: InputPolicy,
    threshold: float,
    min_area: int,
    decision_threshold: float | None = None,
    border: int = 0,
) -> Segmenter:
    """A Segmenter that runs the torch network in place of the ONNX file."""
    model = Probabilities(trained.net).eval()

    def run(batch: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            return [output.numpy() for output in model(torch.from_numpy(batch))]

    return Segmenter(
        run,
        policy,
        threshold,
        min_area,
        decision_threshold=decision_threshold,
        classes=trained.classes,
        border=border,
    )
