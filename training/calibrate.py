"""Stage `calibrate`: choose how the trained network is served, on the validation split.

Run as `python -m training.calibrate`; settings come from params.yaml (`calibrate`,
`postprocess`). The threshold is the one of `calibrate.thresholds` with the best pooled
Dice on the validation tiles among those that flag at most `calibrate.max_free_flagged`
of the defect-free tiles; the test split is never used. Writes reports/calibrate.json,
which `evaluate` and `export` serve the network by (training/served.py reads it).

Kept apart from `train` so that a change to inference (the flip, post-processing, the
threshold grid) reruns the minutes of scoring here, not the training run.
"""

from __future__ import annotations

import json
from typing import Any

from service.framing import InputPolicy
from training.checkpoint import Trained, input_policy, load_checkpoint
from training.dataset import Tile, load_tiles
from training.params import load_params
from training.scoring import predict_tiles, score_tiles, summarise
from training.served import CALIBRATION, torch_segmenter


def main() -> None:
    calibrate(load_params())


def calibrate(params: dict[str, Any]) -> dict:
    """Choose the threshold for the checkpoint served with params.yaml's settings."""
    trained = load_checkpoint()
    policy = input_policy(trained.model_params, params["calibrate"]["test_time_flip"])
    min_area = params["postprocess"]["min_area"]
    threshold, metrics = choose_threshold(
        trained,
        policy,
        load_tiles("valid"),
        min_area,
        thresholds=params["calibrate"]["thresholds"],
        max_free_flagged=params["calibrate"]["max_free_flagged"],
    )
    calibration = {
        "threshold": threshold,
        "min_area": min_area,
        "test_time_flip": policy.test_time_flip,
        "valid": metrics,
    }
    CALIBRATION.parent.mkdir(parents=True, exist_ok=True)
    CALIBRATION.write_text(json.dumps(calibration, indent=2) + "\n")
    print(f"threshold {threshold} chosen on validation: {json.dumps(metrics)}")
    return calibration


def choose_threshold(
    trained: Trained,
    policy: InputPolicy,
    tiles: list[Tile],
    min_area: int,
    thresholds: list[float],
    max_free_flagged: float,
) -> tuple[float, dict]:
    """The threshold with the best pooled Dice among those that flag at most
    `max_free_flagged` of the defect-free tiles (the strictest one if none does)."""
    segmenter = torch_segmenter(trained.net, policy, threshold=0.5, min_area=min_area)
    probabilities = predict_tiles(segmenter, tiles)
    candidates = []
    for threshold in sorted(thresholds):
        segmenter.threshold = float(threshold)
        metrics = summarise(score_tiles(segmenter, tiles, probabilities))
        admissible = metrics["detection"]["free_flagged_rate"] <= max_free_flagged
        candidates.append((admissible, metrics["dice_all"], float(threshold), metrics))
    admissible = [c for c in candidates if c[0]]
    _, _, threshold, metrics = max(admissible) if admissible else candidates[-1]
    return threshold, metrics


if __name__ == "__main__":
    main()
