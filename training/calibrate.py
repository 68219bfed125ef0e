"""Stage `calibrate`: choose how the trained network is served, on the validation split.

Run as `python -m training.calibrate`; settings come from params.yaml (`calibrate`,
`postprocess`); the test split is never used. Two thresholds (the rule they serve is in
service/regions.py):

- the decision threshold on the image score: the lowest that flags at most
  `calibrate.max_free_flagged` of the defect-free validation tiles, so the highest recall
  at that false-alarm rate;
- the pixel threshold, which draws the regions of the tiles so flagged: the one of
  `calibrate.thresholds` with the best mean of the per-folder Dice on the validation
  tiles (ties: the best pooled Dice). Pooled Dice is carried by the frays and uneven
  surfaces of thousands of pixels; a threshold low enough to add a few of their edge
  pixels can draw a false region beside a blowhole of a few dozen and halve that class's
  Dice. Each class counting the same is how the training loss weighs them, too.

Writes reports/calibrate.json, which `evaluate` and `export` serve the network by
(training/served.py reads it). Kept apart from `train` so that a change to inference
(the flip, post-processing, the thresholds) reruns the minutes of scoring here, not the
training run.
"""

from __future__ import annotations

import json
import math
from typing import Any

from service.regions import SCORE_DECIMALS, image_score
from service.segmenter import Prediction
from training.checkpoint import input_policy, load_checkpoint
from training.dataset import Tile, load_tiles
from training.params import load_params
from training.scoring import predict_tiles, score_tiles, summarise
from training.served import CALIBRATION, torch_segmenter


def main() -> None:
    calibrate(load_params())


def calibrate(params: dict[str, Any]) -> dict:
    """Choose both thresholds for the checkpoint served with params.yaml's settings."""
    trained = load_checkpoint()
    policy = input_policy(trained.model_params, params["calibrate"]["test_time_flip"])
    min_area, border = params["postprocess"]["min_area"], params["postprocess"]["border"]
    tiles = load_tiles("valid")
    segmenter = torch_segmenter(trained, policy, threshold=0.5, min_area=min_area, border=border)
    predictions = predict_tiles(segmenter, tiles)
    segmenter.decision_threshold = decision_threshold(
        tiles, predictions, min_area, border, params["calibrate"]["max_free_flagged"]
    )
    candidates = []
    for threshold in sorted(params["calibrate"]["thresholds"]):
        segmenter.threshold = float(threshold)
        scores = score_tiles(segmenter, tiles, predictions)
        candidates.append((float(threshold), summarise(scores, params["split"]["group_frames"])))
    threshold, metrics = pixel_threshold(candidates)
    calibration = {
        "threshold": threshold,
        "decision_threshold": segmenter.decision_threshold,
        "min_area": min_area,
        "border": border,
        "test_time_flip": policy.test_time_flip,
        "valid": metrics,
    }
    CALIBRATION.parent.mkdir(parents=True, exist_ok=True)
    CALIBRATION.write_text(json.dumps(calibration, indent=2) + "\n")
    print(
        f"decision threshold {segmenter.decision_threshold}, pixel threshold {threshold}, "
        f"chosen on validation: {json.dumps(metrics)}"
    )
    return calibration


def decision_threshold(
    tiles: list[Tile],
    predictions: list[Prediction],
    min_area: int,
    border: int,
    max_free_flagged: float,
) -> float:
    """The lowest threshold on the image score that flags at most `max_free_flagged` of
    the defect-free tiles: just above the score of the first one it must let pass."""
    free = sorted(
        (
            image_score(p.probability, min_area, border)
            for t, p in zip(tiles, predictions, strict=True)
            if t.label == "Free"
        ),
        reverse=True,
    )
    if not free:
        raise SystemExit("error: the validation split has no defect-free tiles to calibrate on.")
    allowed = math.floor(max_free_flagged * len(free) + 1e-9)
    if allowed >= len(free):
        return 0.0
    # Scores have SCORE_DECIMALS decimals: one step above this one lets it pass.
    return round(free[allowed] + 10**-SCORE_DECIMALS, SCORE_DECIMALS)


def pixel_threshold(candidates: list[tuple[float, dict]]) -> tuple[float, dict]:
    """The (threshold, validation metrics) pair with the best mean per-folder Dice, then
    the best pooled Dice, then the higher threshold."""
    return max(candidates, key=_class_balanced_dice)


def _class_balanced_dice(candidate: tuple[float, dict]) -> tuple[float, float, float]:
    threshold, metrics = candidate
    per_folder = list(metrics["per_class_dice"].values())
    return sum(per_folder) / len(per_folder), metrics["dice_defect"], threshold


if __name__ == "__main__":
    main()
