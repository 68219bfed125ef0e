"""The sheet of the decision's errors: each tile it gets wrong, shown where it went wrong."""

from __future__ import annotations

import numpy as np

from service.framing import InputPolicy
from service.segmenter import Segmenter
from training.dataset import Tile
from training.pictures import ANSWER, COLUMNS, TEXT, TRUTH, WINDOW, ZOOM, captioned, error_sheet
from training.scoring import predict_tiles, score_tiles

SIZE = 200


def identity(batch: np.ndarray) -> list[np.ndarray]:
    """A stand-in network whose defect probability is the pixel's brightness."""
    return [batch.astype(np.float32) / 255]


def tile(
    name: str, label: str, bright: tuple[int, int] | None, defect: tuple[int, int] | None
) -> Tile:
    """A dark photo, bright (so suspicious) in a 10-pixel square at `bright`, with its
    mask on the 10-pixel square at `defect`."""
    image = np.zeros((SIZE, SIZE), np.uint8)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    if bright:
        image[bright[0] : bright[0] + 10, bright[1] : bright[1] + 10] = 255
    if defect:
        mask[defect[0] : defect[0] + 10, defect[1] : defect[1] + 10] = 1
    return Tile(f"MT_{label}/{name}", label, image, mask)


TILES = [
    tile("passed-free", "Free", None, None),
    tile("missed-crack", "Crack", None, (40, 150)),
    tile("found-crack", "Crack", (60, 60), (60, 60)),
    tile("rejected-free", "Free", (100, 100), None),
]


def sheet(limit: int = 36, tiles: list[Tile] = TILES) -> np.ndarray:
    segmenter = Segmenter(identity, InputPolicy(16, 1024), 0.5, 1, decision_threshold=0.5)
    predictions = predict_tiles(segmenter, tiles)
    return error_sheet(
        tiles, predictions, score_tiles(segmenter, tiles, predictions), segmenter, limit
    )


def close_up(picture: np.ndarray, index: int) -> np.ndarray:
    """The zoomed photo of the `index`-th cell of the sheet's first row."""
    strip = captioned(np.zeros((0, 1, 3), np.uint8), "", TEXT).shape[0]
    left = index * (WINDOW * ZOOM + 4)
    return picture[3 * strip : 3 * strip + WINDOW * ZOOM, left : left + WINDOW * ZOOM]


def has(picture: np.ndarray, colour: tuple[int, int, int]) -> bool:
    return bool(np.all(picture == colour, axis=-1).any())


def test_each_error_is_shown_at_its_spot_rejections_first() -> None:
    picture = sheet()
    assert picture.shape[1] == COLUMNS * WINDOW * ZOOM + (COLUMNS - 1) * 4
    rejected, missed, blank = (close_up(picture, i) for i in range(3))
    # The rejected defect-free tile: the answer's outline around the bright square, in the
    # middle of its close-up, and no truth.
    assert has(rejected, ANSWER) and not has(rejected, TRUTH)
    rows, columns = np.nonzero(np.all(rejected == ANSWER, axis=-1))
    assert abs(rows.mean() - WINDOW) < 12 and abs(columns.mean() - WINDOW) < 12
    # The missed crack: its truth outlined, nothing answered.
    assert has(missed, TRUTH) and not has(missed, ANSWER)
    # The tiles the decision got right are not on the sheet.
    assert not blank.any()


def test_the_limit_keeps_the_most_confident_rejections() -> None:
    first, second = (close_up(sheet(limit=1), i) for i in range(2))
    assert has(first, ANSWER)
    assert not second.any()


def test_a_decision_without_errors_still_gives_a_sheet() -> None:
    picture = sheet(tiles=[TILES[0], TILES[2]])
    assert picture.shape[1] == COLUMNS * WINDOW * ZOOM + (COLUMNS - 1) * 4
    assert not close_up(picture, 0).any()
