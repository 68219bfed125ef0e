"""The ROC's recall at a false-alarm rate, the figure that compares two networks apart
from where each one's served threshold landed; and how sure a share of tiles is."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from training.scoring import TileScore, recall_at_free_flagged, tile_interval


def tile(label: str, score: float) -> TileScore:
    return TileScore(
        id=f"{label}-{score}",
        label=label,
        intersection=0,
        predicted=0,
        truth=0,
        pixels=1,
        score=score,
        flagged=False,
        predicted_label="Free",
        confusion=np.zeros((6, 6), np.int64),
    )


def test_the_best_recall_flags_no_more_defect_free_tiles_than_allowed() -> None:
    free = [tile("Free", s / 100) for s in range(20)]  # 0.00 ... 0.19
    defect = [tile("Crack", s) for s in (0.9, 0.5, 0.185, 0.15, 0.05)]
    # None flagged: only the cracks above every free tile (0.9, 0.5) are found.
    assert recall_at_free_flagged(free + defect, 0.0) == {"max_free_flagged": 0.0, "recall": 0.4}
    # One of 20 (5%): a threshold just above the second free tile (0.18) finds 0.185 too.
    assert recall_at_free_flagged(free + defect, 0.05)["recall"] == 0.6
    # Five of 20: down to 0.15, the last free tile flagged and the fourth crack found.
    assert recall_at_free_flagged(free + defect, 0.25)["recall"] == 0.8


def photo(name: str, flagged: bool) -> TileScore:
    return TileScore(name, "Crack", 0, 0, 0, 1, float(flagged), flagged, "Free", np.zeros((6, 6)))


def six_photos_of_each(flags: list[bool]) -> list[TileScore]:
    """Each tile shot six times, in a burst of frame numbers far from the next tile's."""
    return [
        photo(f"MT_Crack/exp{shot}_num_{10_000 * tile + shot}", flagged)
        for tile, flagged in enumerate(flags)
        for shot in range(1, 7)
    ]


@pytest.mark.parametrize(("hits", "trials"), [(74, 78), (15, 190), (3, 3)])
def test_photos_of_different_tiles_get_the_wilson_interval(hits: int, trials: int) -> None:
    photos = [photo(f"MT_Crack/exp1_num_{10_000 * i}", i < hits) for i in range(trials)]
    wilson = binomtest(hits, trials).proportion_ci(method="wilson")
    expected = {"low": round(wilson.low, 4), "high": round(wilson.high, 4)}
    assert tile_interval(photos, group_frames=1000) == expected
    assert tile_interval(photos, group_frames=0) == expected


@pytest.mark.parametrize("flags", [[True] * 12 + [False] * 2, [True] * 14])
def test_six_alike_photos_of_a_tile_say_no_more_than_the_tile(flags: list[bool]) -> None:
    """Recall 12 of 14 tiles is known to tens of points, not to the few that 84 photos
    would suggest."""
    photos = six_photos_of_each(flags)
    as_tiles = [photo(f"MT_Crack/exp1_num_{10_000 * i}", f) for i, f in enumerate(flags)]
    counted = tile_interval(photos, group_frames=1000)
    assert counted == tile_interval(as_tiles, group_frames=1000)
    photo_by_photo = tile_interval(photos, group_frames=0)
    assert counted["high"] - counted["low"] > photo_by_photo["high"] - photo_by_photo["low"]


def test_photos_of_one_tile_answered_apart_count_for_more_than_one_tile() -> None:
    """Half of each tile's photos flagged: each tile says as much as its photos."""
    photos = [
        photo(f"MT_Crack/exp{shot}_num_{10_000 * tile + shot}", shot % 2 == 0)
        for tile in range(4)
        for shot in range(1, 7)
    ]
    assert tile_interval(photos, group_frames=1000) == tile_interval(photos, group_frames=0)
