"""Connected defect regions: 8-connected, boxed, filtered by area, scored by probability."""

from __future__ import annotations

import numpy as np

from service.regions import Region, find_regions


def test_regions_are_eight_connected_boxed_and_filtered_by_area() -> None:
    probability = np.zeros((20, 30), np.float32)
    probability[2:6, 3:8] = 0.9  # 20 pixels
    probability[6, 8] = 0.7  # touches the block only at a corner: the same region
    probability[10:13, 20:22] = 0.8  # 6 pixels: below min_area
    probability[15:18, 0:30] = 0.6  # 90 pixels along the whole width
    probability[15:18, 10] = 0.4  # under the threshold: splits the band in two
    found = find_regions(probability, threshold=0.5, min_area=20)
    assert found.regions == [
        Region(x=3, y=2, width=6, height=5, area=21, mean_probability=round(18.7 / 21, 4)),
        Region(x=0, y=15, width=10, height=3, area=30, mean_probability=0.6),
        Region(x=11, y=15, width=19, height=3, area=57, mean_probability=0.6),
    ]
    assert found.mask.dtype == np.uint8 and set(np.unique(found.mask)) == {0, 255}
    assert np.count_nonzero(found.mask) == 21 + 30 + 57  # the small region is left out
    assert found.defective and found.score == np.float32(0.9)


def test_a_photo_without_defects_has_no_regions() -> None:
    found = find_regions(np.full((8, 8), 0.2, np.float32), threshold=0.5, min_area=1)
    assert found.regions == [] and not found.defective and not found.mask.any()


def test_a_photo_that_is_all_defect_is_one_region() -> None:
    found = find_regions(np.ones((4, 5), np.float32), threshold=0.5, min_area=1)
    assert found.regions == [Region(0, 0, 5, 4, 20, 1.0)]
