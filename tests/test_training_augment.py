"""Training augmentation: whatever it does to a crop, the mask must still cover the defect."""

from __future__ import annotations

import numpy as np
import pytest

from training.dataset import augment


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
