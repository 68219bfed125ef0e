"""The pictures `evaluate` writes: a tile's photo, truth and answer side by side, and one
sheet of every tile the decision got wrong, each shown where it went wrong.

The sheet is what a reviewer needs to judge the false-alarm and miss figures: whether a
rejected defect-free tile carries a mark a person would also call a defect, and what a
passed defect looks like.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from service.regions import peak
from service.segmenter import Prediction, Segmenter
from training.dataset import Tile
from training.scoring import TileScore

# Each close-up: this many photo pixels a side, drawn twice as large.
WINDOW = 96
ZOOM = 2
COLUMNS = 6
TRUTH = (0, 200, 0)
ANSWER = (0, 0, 255)
TEXT = (255, 255, 255)


def triptych(
    image: np.ndarray, truth: np.ndarray, predicted: np.ndarray, captions: tuple[str, str]
) -> np.ndarray:
    """The photo, then the truth in green, then the prediction in red, side by side, each
    under a caption that says which it is (and, from `captions`, what each says)."""
    photo = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    panels = [captioned(photo, "photo", TEXT)]
    for mask, colour, caption in (
        (truth, TRUTH, f"truth: {captions[0]}"),
        (predicted, ANSWER, f"prediction: {captions[1]}"),
    ):
        tinted = photo.copy()
        tinted[mask > 0] = (0.4 * tinted[mask > 0] + 0.6 * np.array(colour)).astype(np.uint8)
        panels.append(captioned(tinted, caption, colour))
    gap = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    return np.hstack([panels[0], gap, panels[1], gap, panels[2]])


def error_sheet(
    tiles: Sequence[Tile],
    predictions: Sequence[Prediction],
    scores: Sequence[TileScore],
    segmenter: Segmenter,
    limit: int,
) -> np.ndarray:
    """Every defect-free tile the decision rejects, the most confident first, then every
    defect tile it passes, the least confident first, at most `limit` in all.

    Each is a close-up of the spot that decided it, the truth outlined in green and the
    answer's mask in red: for a rejection, the most suspicious pixel outside the band the
    image score leaves out; for a miss, the pixel of the defect the network came closest
    to finding.
    """
    rejected = [i for i, s in enumerate(scores) if s.flagged and not s.is_defect_class]
    passed = [i for i, s in enumerate(scores) if not s.flagged and s.is_defect_class]
    rejected.sort(key=lambda i: -scores[i].score)
    passed.sort(key=lambda i: scores[i].score)
    shown = (rejected + passed)[:limit]
    cells = [_close_up(tiles[i], predictions[i], scores[i], segmenter) for i in shown]
    free = sum(not s.is_defect_class for s in scores)
    header = (
        f"decision threshold {segmenter.decision_threshold:.4f}: {len(rejected)} of {free} "
        f"defect-free tiles rejected, {len(passed)} of {len(scores) - free} defect tiles "
        f"passed ({len(shown)} shown; green truth, red answer)"
    )
    return captioned(_grid(cells), header, TEXT)


def captioned(panel: np.ndarray, caption: str, colour: tuple[int, int, int]) -> np.ndarray:
    """`panel` under a black strip with `caption` written in `colour`."""
    scale = 0.45
    # Measured on fixed text, so that strips have one height.
    (_, height), baseline = cv2.getTextSize("Agp", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    strip = np.zeros((height + baseline + 8, panel.shape[1], 3), np.uint8)
    origin = (4, 4 + height)
    cv2.putText(strip, caption, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)
    return np.vstack([strip, panel])


def _close_up(
    tile: Tile, prediction: Prediction, score: TileScore, segmenter: Segmenter
) -> np.ndarray:
    """The WINDOW-pixel square around the spot that decided `tile`, under two captions."""
    probability = prediction.probability
    if score.flagged or not tile.mask.any():
        row, column = peak(probability, segmenter.border)
    else:
        spot = np.argmax(np.where(tile.mask > 0, probability, -1.0))
        row, column = np.unravel_index(spot, probability.shape)
    top = int(np.clip(row - WINDOW // 2, 0, max(tile.image.shape[0] - WINDOW, 0)))
    left = int(np.clip(column - WINDOW // 2, 0, max(tile.image.shape[1] - WINDOW, 0)))
    window = np.s_[top : top + WINDOW, left : left + WINDOW]
    picture = cv2.cvtColor(tile.image[window], cv2.COLOR_GRAY2BGR)
    answer = segmenter.postprocess(prediction).mask
    for mask, colour in ((tile.mask, TRUTH), (answer, ANSWER)):
        outlines, _ = cv2.findContours(
            (mask[window] > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
        )
        cv2.drawContours(picture, outlines, -1, colour, 1)
    picture = np.pad(
        picture,
        ((0, WINDOW - picture.shape[0]), (0, WINDOW - picture.shape[1]), (0, 0)),
    )
    picture = cv2.resize(picture, None, fx=ZOOM, fy=ZOOM, interpolation=cv2.INTER_NEAREST)
    verdict = f"reject, {score.predicted_label.lower()}" if score.flagged else "pass"
    described = captioned(picture, f"{tile.label.lower()} -> {verdict} {score.score:.3f}", TEXT)
    return captioned(described, tile.id.split("/")[-1], TEXT)


def _grid(cells: list[np.ndarray]) -> np.ndarray:
    """`cells` (one size) in rows of COLUMNS, white between them; a blank row if none."""
    strip = captioned(np.zeros((0, 1, 3), np.uint8), "", TEXT).shape[0]
    blank = np.zeros((WINDOW * ZOOM + 2 * strip, WINDOW * ZOOM, 3), np.uint8)
    cells = cells + [blank] * (-len(cells) % COLUMNS) if cells else [blank] * COLUMNS
    gap = np.full((blank.shape[0], 4, 3), 255, np.uint8)
    rows = [
        np.hstack([part for cell in cells[i : i + COLUMNS] for part in (gap, cell)][1:])
        for i in range(0, len(cells), COLUMNS)
    ]
    line = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
    return np.vstack([part for row in rows for part in (line, row)][1:])
