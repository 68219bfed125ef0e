"""The answer's rule: one decision on the image score; regions 8-connected, boxed, filtered
by area, named by class; a rejected tile always shows where, a passed one shows nothing."""

from __future__ import annotations

import numpy as np

from service.regions import Region, find_regions, image_score

CLASSES = ("background", "hole", "stain")


def test_regions_are_eight_connected_boxed_and_filtered_by_area() -> None:
    probability = np.zeros((20, 30), np.float32)
    probability[2:6, 3:8] = 0.9  # 20 pixels
    probability[6, 8] = 0.7  # touches the block only at a corner: the same region
    probability[10:13, 20:22] = 0.8  # 6 pixels: below min_area
    probability[15:18, 0:30] = 0.6  # 90 pixels along the whole width
    probability[15:18, 10] = 0.4  # under the threshold: splits the band in two
    found = find_regions(probability, threshold=0.5, decision_threshold=0.5, min_area=20)
    first = round(18.7 / 21, 4)
    assert found.regions == [
        Region(
            3, 2, 6, 5, 21, first, "defect", {"background": round(1 - first, 4), "defect": first}
        ),
        Region(0, 15, 10, 3, 30, 0.6, "defect", {"background": 0.4, "defect": 0.6}),
        Region(11, 15, 19, 3, 57, 0.6, "defect", {"background": 0.4, "defect": 0.6}),
    ]
    assert found.mask.dtype == np.uint8 and set(np.unique(found.mask)) == {0, 255}
    assert np.count_nonzero(found.mask) == 21 + 30 + 57  # the small region is left out
    assert found.defective and found.score == 0.9  # the 20th highest pixel
    # A model without classes labels every defect pixel 1.
    assert set(np.unique(found.labels)) == {0, 1}
    assert np.array_equal(found.labels > 0, found.mask > 0)


def test_the_decision_follows_the_score_alone() -> None:
    probability = np.zeros((20, 30), np.float32)
    probability[2:8, 3:9] = 0.75  # 36 pixels
    passed = find_regions(probability, threshold=0.5, decision_threshold=0.8, min_area=20)
    assert passed.score == 0.75 and not passed.defective
    # No regions and an empty mask, though 36 pixels pass the pixel threshold.
    assert passed.regions == [] and not passed.mask.any() and not passed.labels.any()
    rejected = find_regions(probability, threshold=0.5, decision_threshold=0.75, min_area=20)
    assert rejected.defective and len(rejected.regions) == 1


def test_a_rejected_tile_without_a_region_at_the_pixel_threshold_still_shows_where() -> None:
    probability = np.full((20, 30), 0.1, np.float32)
    probability[5:10, 5:10] = 0.6  # 25 pixels, none at the pixel threshold
    probability[7, 7] = 0.65  # the most probable pixel
    probability[15:17, 20:22] = 0.62  # 4 pixels elsewhere, over the decision threshold
    found = find_regions(probability, threshold=0.9, decision_threshold=0.6, min_area=20)
    assert found.defective and found.score == 0.6
    assert found.regions_threshold == 0.6
    assert [(r.x, r.y, r.area) for r in found.regions] == [(5, 5, 25)]
    assert np.count_nonzero(found.mask) == 25


def test_the_score_leaves_out_the_band_along_the_edges() -> None:
    probability = np.full((20, 30), 0.1, np.float32)
    probability[:, 28:] = 0.99  # a bright strip within 2 pixels of the right edge
    probability[9:12, 9:12] = 0.7  # 9 pixels inside
    assert image_score(probability, min_area=4) == 0.99
    assert image_score(probability, min_area=4, border=2) == 0.7
    # A photo too small for the band is scored whole.
    assert image_score(probability[:4, 26:], min_area=4, border=2) == 0.99


def test_a_rejected_tile_shows_the_region_its_score_came_from_not_the_band() -> None:
    probability = np.full((20, 30), 0.1, np.float32)
    probability[5:8, 29] = 0.99  # 3 pixels in the outermost column: under min_area
    probability[9:12, 9:12] = 0.7
    probability[10, 10] = 0.8
    found = find_regions(probability, 0.9, decision_threshold=0.7, min_area=4, border=2)
    assert found.defective and found.score == 0.7 and found.regions_threshold == 0.7
    # The most probable pixel is in the band; the region shown is the one scored.
    assert [(r.x, r.y, r.area) for r in found.regions] == [(9, 9, 9)]


def test_the_score_is_the_number_shown_and_compared() -> None:
    probability = np.full((10, 10), np.float32(0.9), np.float32)  # stored as 0.89999998
    assert image_score(probability, 5) == 0.9
    probability[:] = 0.69996
    assert image_score(probability, 5) == 0.6999
    found = find_regions(probability, threshold=0.5, decision_threshold=0.7, min_area=5)
    assert not found.defective


def test_each_region_is_named_by_its_likeliest_defect_class() -> None:
    probability = np.zeros((20, 30), np.float32)
    probability[2:6, 3:8] = 0.9
    probability[12:18, 10:20] = 0.8
    classes = np.zeros((3, 20, 30), np.float32)
    classes[0] = 1 - probability
    classes[1, 2:6, 3:8] = 0.6  # a hole, though a third of it looks like a stain
    classes[2, 2:6, 3:8] = 0.3
    classes[2, 12:18, 10:20] = 0.8  # a stain
    found = find_regions(probability, 0.5, 0.5, 10, classes, CLASSES)
    assert [r.class_name for r in found.regions] == ["hole", "stain"]
    assert found.regions[0].class_probabilities == {"background": 0.1, "hole": 0.6, "stain": 0.3}
    assert set(np.unique(found.labels[2:6, 3:8])) == {1}
    assert set(np.unique(found.labels[12:18, 10:20])) == {2}
    assert np.count_nonzero(found.labels) == 20 + 60


def test_class_maps_at_the_networks_smaller_size_name_regions_of_the_photo() -> None:
    probability = np.zeros((40, 60), np.float32)
    probability[4:12, 6:16] = 0.9
    small = np.zeros((3, 20, 30), np.float32)
    small[0] = 1.0
    small[:, 2:6, 3:8] = np.array([0.1, 0.2, 0.7])[:, None, None]
    found = find_regions(probability, 0.5, 0.5, 10, small, CLASSES)
    assert [r.class_name for r in found.regions] == ["stain"]
    assert found.labels.shape == probability.shape


def test_a_photo_without_defects_has_no_regions() -> None:
    found = find_regions(np.full((8, 8), 0.2, np.float32), 0.5, 0.5, min_area=1)
    assert found.regions == [] and not found.defective and not found.mask.any()


def test_a_photo_that_is_all_defect_is_one_region() -> None:
    found = find_regions(np.ones((4, 5), np.float32), 0.5, 0.5, min_area=1)
    assert found.regions == [
        Region(0, 0, 5, 4, 20, 1.0, "defect", {"background": 0.0, "defect": 1.0})
    ]
