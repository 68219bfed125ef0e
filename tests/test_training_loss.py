"""The training loss: a few confident pixels on a defect-free crop must cost something, and
a small defect of a rare class must count.

Confident pixels are what flags a defect-free tile in the service (its image score is the
`min_area`-th highest defect probability), yet soft Dice barely sees them and pixel
cross-entropy averages them away over the whole crop.
"""

from __future__ import annotations

import torch

from training.train import DefectLoss

TOP_K = 32
CLASSES = 6


def logits_for(classes: torch.Tensor) -> torch.Tensor:
    """Confident logits [N, CLASSES, H, W] that answer `classes` [N, H, W]."""
    return torch.nn.functional.one_hot(classes, CLASSES).permute(0, 3, 1, 2).float() * 16 - 8


def test_a_false_alarm_on_a_defect_free_crop_costs_through_the_image_term() -> None:
    targets = torch.zeros(2, 64, 64, dtype=torch.long)
    quiet = logits_for(targets)
    alarm_classes = targets.clone()
    alarm_classes[:, :8, :4] = 3  # TOP_K confident crack pixels
    alarm = logits_for(alarm_classes)

    def image_term(logits: torch.Tensor) -> float:
        with_term, without = DefectLoss(0.5, 0.5, 1.0, TOP_K), DefectLoss(0.5, 0.5, 0.0, TOP_K)
        return float(with_term(logits, targets) - without(logits, targets))

    assert image_term(alarm) > 5.0
    assert image_term(quiet) < 0.01


def test_a_small_defect_found_costs_less_than_one_missed() -> None:
    targets = torch.zeros(1, 64, 64, dtype=torch.long)
    targets[:, 30:35, 30:35] = 1  # a 25-pixel blowhole: fewer pixels than TOP_K
    loss = DefectLoss(0.5, 0.5, 0.5, TOP_K)
    missed = logits_for(torch.zeros_like(targets))
    assert loss(logits_for(targets), targets) < loss(missed, targets)


def test_a_defect_found_but_named_wrongly_costs_through_the_class_terms() -> None:
    targets = torch.zeros(2, 64, 64, dtype=torch.long)
    targets[0, 30:35, 30:35] = 1  # a small blowhole
    targets[1, :, :40] = 5  # a large uneven surface
    wrong = targets.clone()
    wrong[0][targets[0] == 1] = 5  # the blowhole called uneven
    right_loss = DefectLoss(0.5, 0.5, 0.5, TOP_K)(logits_for(targets), targets)
    with_class_dice = DefectLoss(0.5, 0.5, 0.5, TOP_K)(logits_for(wrong), targets)
    without_class_dice = DefectLoss(0.5, 0.0, 0.5, TOP_K)(logits_for(wrong), targets)
    # The blowhole is 25 of the batch's 2585 defect pixels: without the per-class Dice its
    # misnaming hardly shows; with it, it costs as much as the blowhole class is worth.
    assert float(with_class_dice - right_loss) > 0.2
    assert float(with_class_dice - without_class_dice) > 0.2
