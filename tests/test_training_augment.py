"""Training crops and augmentation: whatever they do, the mask must still cover the defect."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from service.framing import InputPolicy
from training.dataset import Tile, TrainCrops, augment


@pytest.mark.parametrize("seed", range(8))
def test_the_mask_moves_with_the_image(seed: int) -> None:
    image = np.full((128, 96), 180, np.uint8)
    image[40:60, 20:50] = 20  # a dark defect off the centre, so any flip moves it
    mask = (image < 100).astype(np.uint8)
    flipped, moved = augment(image, mask, np.random.default_rng(seed))
    assert flipped.shape == image.shape and moved.sum() == mask.sum()
    # Brightness and contrast drift shift the grey levels, never past the defect's contrast.
    dark = flipped < (int(flipped.max()) + int(flipped.min())) / 2
    np.testing.assert_array_equal(dark, moved.astype(bool))


@pytest.mark.parametrize("seed", range(8))
def test_a_turned_and_scaled_crop_keeps_its_mask_on_the_defect(seed: int) -> None:
    image = np.full((128, 128), 180, np.uint8)
    image[40:70, 30:80] = 20
    mask = (image < 100).astype(np.uint8)
    warped, moved = augment(image, mask, np.random.default_rng(seed), 10.0, 1.25)
    dark = warped < (int(warped.max()) + int(warped.min())) / 2
    overlap = (dark & moved.astype(bool)).sum() / (dark | moved.astype(bool)).sum()
    assert set(np.unique(moved)) <= {0, 1} and overlap > 0.95
    # The defect really moved or changed size: the crop is not the flipped original.
    assert not any(
        np.array_equal(moved, m) for m in (mask, mask[::-1], mask[:, ::-1], mask[::-1, ::-1])
    )


@pytest.mark.parametrize("shape", [(100, 150), (1500, 700)])
def test_defect_crops_hold_the_defect_at_any_tile_size(shape: tuple[int, int]) -> None:
    """Small tiles are padded up to the crop; large ones scaled down to `max_side` first."""
    image = np.full(shape, 180, np.uint8)
    top = shape[0] // 2
    image[top : top + 40, -50:-10] = 20  # by the right edge, where padding begins
    tile = Tile("t", "Blowhole", image, (image < 100).astype(np.uint8))
    crops = TrainCrops(
        [tile],
        InputPolicy(stride=32, max_side=1024),
        crop_size=128,
        defect_crop_fraction=1.0,
        class_balance=0.0,
        length=20,
        seed=0,
    )
    for index in range(len(crops)):
        crop, targets = crops[index]
        assert crop.shape == (1, 128, 128) and targets.shape == (128, 128)
        # The defect's pixels carry its folder's class (blowhole, 1), the rest background.
        assert set(targets.unique().tolist()) == {0, 1}


@pytest.mark.parametrize("paste_fraction", [0.0, 1.0])
def test_defect_free_crops_get_a_pasted_defect_where_their_mask_says(
    paste_fraction: float,
) -> None:
    """A blowhole cut from a defect tile shows up, dark and labelled, on defect-free crops."""
    crops = _crops_of_a_clean_and_a_holed_tile(paste_fraction, paste_into="free")
    holding = 0
    for which in range(len(crops)):
        image, targets = (array.numpy() for array in crops[which])
        labelled = targets == 1
        if labelled.any():
            holding += 1
            # The mask covers the dark pixels and nothing else.
            assert image[0][labelled].max() < image[0][~labelled].min()
    # Unpasted, about half the crops come from the defect-free tile and hold nothing.
    assert holding == len(crops) if paste_fraction else holding < 0.75 * len(crops)


def test_pasting_into_defect_tiles_leaves_defect_free_crops_clean() -> None:
    """With `paste_into="defect"` the pasted blowholes land beside the defect tile's own,
    and the defect-free tile's crops show no defect."""
    crops = _crops_of_a_clean_and_a_holed_tile(1.0, paste_into="defect")
    regions = []
    for which in range(len(crops)):
        _, targets = (array.numpy() for array in crops[which])
        count, _ = cv2.connectedComponents((targets == 1).astype(np.uint8))
        regions.append(count - 1)
    # About half the crops are the defect-free tile's, clean; the others hold their own
    # blowhole and, unless the two overlap, the pasted one.
    assert 0.25 * len(crops) < regions.count(0) < 0.75 * len(crops)
    assert max(regions) == 2


def test_an_unknown_paste_target_is_refused_with_the_setting_named() -> None:
    with pytest.raises(ValueError, match=r"train\.paste_into 'defects'.*use defect or free"):
        _crops_of_a_clean_and_a_holed_tile(1.0, paste_into="defects")


def _crops_of_a_clean_and_a_holed_tile(paste_fraction: float, paste_into: str) -> TrainCrops:
    """Crops of two tiles drawn equally: a plain surface, and the same with a dark
    12 x 10 blowhole; crops of the holed tile are centred on it."""
    rng = np.random.default_rng(0)
    surface = (150 + rng.normal(0, 3, (256, 256))).clip(0, 255).astype(np.uint8)
    holed = surface.copy()
    holed[100:112, 60:70] = 40
    tiles = [
        Tile("free", "Free", surface, np.zeros_like(surface)),
        Tile("hole", "Blowhole", holed, (holed < 100).astype(np.uint8)),
    ]
    return TrainCrops(
        tiles,
        InputPolicy(stride=32, max_side=1024),
        crop_size=128,
        defect_crop_fraction=1.0,
        class_balance=0.0,
        length=40,
        seed=1,
        paste_fraction=paste_fraction,
        paste_into=paste_into,
    )
