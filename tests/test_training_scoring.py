"""The ROC's recall at a false-alarm rate: the figure that compares two networks apart
from where each one's served threshold landed."""

from __future__ import annotations

import numpy as np

from training.scoring import TileScore, recall_at_free_flagged


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
