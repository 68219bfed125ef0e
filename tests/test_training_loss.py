"""The training loss: a few confident pixels on a defect-free crop must cost something.

They are what flags a defect-free tile in the service (its image score is the
`min_area`-th highest probability), yet soft Dice barely sees them and pixel
cross-entropy averages them away over the whole crop.
"""

from __future__ import annotations

import torch

from training.train import DefectLoss

TOP_K = 64


def test_a_false_alarm_on_a_defect_free_crop_costs_through_the_image_term() -> None:
    target = torch.zeros(2, 1, 64, 64)
    quiet = torch.full_like(target, -8.0)
    alarm = quiet.clone()
    alarm[:, :, :8, :8] = 8.0  # TOP_K confident pixels

    def image_term(logits: torch.Tensor) -> float:
        with_term, without = DefectLoss(0.5, 1.0, TOP_K), DefectLoss(0.5, 0.0, TOP_K)
        return float(with_term(logits, target) - without(logits, target))

    assert image_term(alarm) > 5.0
    assert image_term(quiet) < 0.01


def test_a_small_defect_found_costs_less_than_one_missed() -> None:
    target = torch.zeros(1, 1, 64, 64)
    target[:, :, 30:35, 30:35] = 1.0  # 25 pixels: fewer than TOP_K
    missed = torch.full_like(target, -8.0)
    found = torch.where(target > 0, 8.0, -8.0)
    loss = DefectLoss(0.5, 0.5, TOP_K)
    assert loss(found, target) < loss(missed, target)
