"""How `calibrate` chooses the two thresholds from validation scores."""

from __future__ import annotations

import numpy as np

from service.segmenter import Prediction
from training.calibrate import decision_threshold, pixel_threshold
from training.dataset import Tile


def _metrics(pooled: float, blowhole: float, fray: float) -> dict:
    return {"dice_defect": pooled, "per_class_dice": {"Blowhole": blowhole, "Fray": fray}}


def test_pixel_threshold_does_not_trade_a_small_class_for_pooled_dice() -> None:
    # A low threshold adds a few edge pixels to every fray and a false region beside each
    # blowhole: the better pooled Dice is carried by the large class alone.
    low, high = _metrics(0.874, 0.30, 0.95), _metrics(0.869, 0.66, 0.94)
    assert pixel_threshold([(0.4, low), (0.55, high)]) == (0.55, high)


def test_pixel_threshold_breaks_ties_by_pooled_dice_then_the_higher_threshold() -> None:
    a, b = _metrics(0.86, 0.6, 0.8), _metrics(0.87, 0.6, 0.8)
    assert pixel_threshold([(0.5, b), (0.6, a)])[0] == 0.5
    assert pixel_threshold([(0.5, b), (0.6, b)])[0] == 0.6


def test_decision_threshold_flags_at_most_the_share_of_defect_free_tiles() -> None:
    scores = [0.1 * i for i in range(1, 11)] + [0.95]
    tiles, predictions = [], []
    for i, score in enumerate(scores):
        probability = np.zeros((32, 32), np.float32)
        probability[10:14, 10:14] = score
        label = "Blowhole" if i == len(scores) - 1 else "Free"
        blank = np.zeros((32, 32), np.uint8)
        tiles.append(Tile(id=str(i), label=label, image=blank, mask=blank))
        predictions.append(Prediction(probability=probability))
    threshold = decision_threshold(tiles, predictions, min_area=8, border=0, max_free_flagged=0.2)
    # Two of the ten defect-free tiles (0.9 and 1.0) may be flagged, the third (0.8) may not.
    assert 0.8 < threshold <= 0.9
