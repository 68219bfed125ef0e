"""Score a Segmenter on whole tiles at their original resolution.

`calibrate` and `evaluate` run this with the torch model and `export` with the ONNX file,
through the same service code, so the numbers can be compared directly: each tile is
judged by the answer the API would give (its decision, mask and class map).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from service.regions import Segmentation
from service.segmenter import Prediction, Segmenter
from training.dataset import CLASSES, Tile
from training.photos import tile_groups

FREE = "Free"


@dataclass(frozen=True)
class TileScore:
    """Pixel counts, the class confusion and the image-level decision for one tile."""

    id: str
    label: str
    intersection: int
    predicted: int
    truth: int
    pixels: int
    score: float
    flagged: bool
    # The class of the answer's largest region, by the dataset's folder names; "Free"
    # when the tile is not flagged.
    predicted_label: str
    # Pixels of true class i answered as class j, over CLASSES.
    confusion: np.ndarray

    @property
    def is_defect_class(self) -> bool:
        return self.label != FREE


def predict_tiles(segmenter: Segmenter, tiles: Iterable[Tile]) -> list[Prediction]:
    """The network's predictions for each tile, at its own size."""
    return [segmenter.predict(tile.image) for tile in tiles]


def score_tiles(
    segmenter: Segmenter, tiles: list[Tile], predictions: list[Prediction]
) -> list[TileScore]:
    """Compare each tile's answer, as the service would give it, with the truth."""
    return [
        score_tile(tile, segmenter.postprocess(prediction))
        for tile, prediction in zip(tiles, predictions, strict=True)
    ]


def score_tile(tile: Tile, answer: Segmentation) -> TileScore:
    predicted, truth = answer.mask > 0, tile.mask > 0
    classes = len(CLASSES)
    truth_labels = tile.targets(tile.mask).ravel().astype(np.int64)
    confusion = np.bincount(
        truth_labels * classes + answer.labels.ravel(), minlength=classes * classes
    ).reshape(classes, classes)
    return TileScore(
        id=tile.id,
        label=tile.label,
        intersection=int(np.count_nonzero(predicted & truth)),
        predicted=int(np.count_nonzero(predicted)),
        truth=int(np.count_nonzero(truth)),
        pixels=predicted.size,
        score=answer.score,
        flagged=answer.defective,
        predicted_label=_tile_label(answer),
        confusion=confusion,
    )


def summarise(scores: list[TileScore], group_frames: int = 0) -> dict:
    """Pooled pixel metrics, per-class figures and image-level detection metrics.

    The intervals of recall and of the share of defect-free tiles flagged count tiles as
    the split does (`split.group_frames`, training/data_split.py): photos of one tile
    are answered alike, so they say less than as many tiles would.
    """
    defect = [s for s in scores if s.is_defect_class]
    free = [s for s in scores if not s.is_defect_class]
    truth = np.array([s.is_defect_class for s in scores])
    flagged = np.array([s.flagged for s in scores])
    true_positives = int(np.sum(truth & flagged))
    free_flagged = int(np.sum(~truth & flagged))
    precision = true_positives / max(1, int(flagged.sum()))
    recall = true_positives / max(1, int(truth.sum()))
    return {
        "dice_defect": pooled_dice(defect),
        "iou_defect": pooled_iou(defect),
        "dice_all": pooled_dice(scores),
        "iou_all": pooled_iou(scores),
        "pixel_accuracy": pixel_accuracy(scores),
        "per_class_dice": {
            label: pooled_dice([s for s in scores if s.label == label])
            for label in sorted({s.label for s in defect})
        },
        "classes": class_metrics(scores),
        "detection": {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(2 * precision * recall / max(precision + recall, 1e-12), 4),
            "auroc": round(auroc(truth, np.array([s.score for s in scores])), 4),
            "free_flagged_rate": round(free_flagged / len(free), 4) if free else 0.0,
            "recall_ci95": tile_interval(defect, group_frames),
            "free_flagged_ci95": tile_interval(free, group_frames),
        },
        "images": {"defect": len(defect), "free": len(free)},
        "tiles": {
            "defect": len(tile_groups([s.id for s in defect], group_frames)),
            "free": len(tile_groups([s.id for s in free], group_frames)),
        },
    }


def tile_interval(scores: list[TileScore], group_frames: int) -> dict[str, float]:
    """The 95% Wilson interval of the share of these photos flagged, counting the photos of
    one tile (by `group_frames`) for fewer when they are answered alike.

    The photos count as n / d, d the design effect of the tiles' clusters (at least 1):
    the variance of the share over tiles, against that of as many independent photos.
    Each photo its own tile gives d = 1, the plain Wilson interval; when every photo is
    flagged, or none, the tiles count. With the test split's 78 defect and 190
    defect-free photos, a recall of 0.95 or a false-alarm share of 5% is known to a few
    points either way, which a target on it must allow for; on 14 tiles, to tens.
    """
    if not scores:
        return {"low": 0.0, "high": 1.0}
    tile_of = {
        image: index
        for index, tile in enumerate(tile_groups([s.id for s in scores], group_frames))
        for image in tile
    }
    flagged = np.array([s.flagged for s in scores], dtype=np.float64)
    tiles = np.array([tile_of[s.id] for s in scores])
    n, share = len(flagged), float(flagged.mean())
    if 0 < share < 1:
        residuals = np.bincount(tiles, weights=flagged - share)
        design_effect = max(1.0, float(np.sum(residuals**2)) / (n * share * (1 - share)))
        effective = n / design_effect
    else:
        effective = float(len(set(tiles.tolist())))
    return _wilson(share, effective)


def class_metrics(scores: list[TileScore]) -> dict:
    """The six-class figures: IoU and Dice of each class pooled over all pixels of all
    tiles, their mean IoU (FDSNet's mIoU, background included), and how often the class
    of a tile's largest region is its folder's (defect tiles; all tiles, "Free" meaning
    not flagged)."""
    confusion = sum(s.confusion for s in scores)
    hits = np.diag(confusion).astype(np.float64)
    answered, true = confusion.sum(axis=0), confusion.sum(axis=1)
    union = answered + true - hits
    iou = np.divide(hits, union, out=np.ones_like(hits), where=union > 0)
    dice = np.divide(2 * hits, answered + true, out=np.ones_like(hits), where=union > 0)
    defect = [s for s in scores if s.is_defect_class]
    return {
        "miou": round(float(iou.mean()), 4),
        "iou": {name: round(float(v), 4) for name, v in zip(CLASSES, iou, strict=True)},
        "dice": {name: round(float(v), 4) for name, v in zip(CLASSES, dice, strict=True)},
        "tile_accuracy_defect": _share(defect),
        "tile_accuracy_all": _share(scores),
    }


def pooled_dice(scores: list[TileScore]) -> float:
    """2|P∩T| / (|P|+|T|) summed over all pixels of all tiles; 1.0 when both are empty."""
    intersection = sum(s.intersection for s in scores)
    total = sum(s.predicted + s.truth for s in scores)
    return round(2 * intersection / total, 4) if total else 1.0


def pooled_iou(scores: list[TileScore]) -> float:
    intersection = sum(s.intersection for s in scores)
    union = sum(s.predicted + s.truth - s.intersection for s in scores)
    return round(intersection / union, 4) if union else 1.0


def pixel_accuracy(scores: list[TileScore]) -> float:
    wrong = sum(s.predicted + s.truth - 2 * s.intersection for s in scores)
    return round(1 - wrong / sum(s.pixels for s in scores), 6)


def auroc(truth: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum statistic, with ties counted half."""
    positives, negatives = score[truth], score[~truth]
    if not len(positives) or not len(negatives):
        return float("nan")
    greater = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(positives) * len(negatives)))


def recall_at_free_flagged(scores: list[TileScore], max_free_flagged: float) -> dict:
    """The highest recall of any threshold on the image score that flags at most
    `max_free_flagged` of these defect-free tiles: a point of their ROC, which compares
    two networks apart from where a validation split put each one's served threshold."""
    points = [p for p in roc_points(scores) if p["fpr"] <= max_free_flagged]
    return {"max_free_flagged": max_free_flagged, "recall": max(p["tpr"] for p in points)}


def roc_points(scores: list[TileScore]) -> list[dict[str, float]]:
    """False- and true-positive rates at every distinct image score, for the ROC plot."""
    truth = np.array([s.is_defect_class for s in scores])
    values = np.array([s.score for s in scores])
    points = []
    for threshold in np.unique(np.concatenate([[1.1], values]))[::-1]:
        flagged = values >= threshold
        points.append(
            {
                "fpr": round(float(np.mean(flagged[~truth])) if (~truth).any() else 0.0, 4),
                "tpr": round(float(np.mean(flagged[truth])) if truth.any() else 0.0, 4),
            }
        )
    return points


def _wilson(share: float, trials: float, z: float = 1.959964) -> dict[str, float]:
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    spread = (
        z
        / (1 + z * z / trials)
        * np.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials))
    )
    return {
        "low": round(float(max(0.0, centre - spread)), 4),
        "high": round(float(min(1.0, centre + spread)), 4),
    }


def _tile_label(answer: Segmentation) -> str:
    """The dataset folder name of the class of the answer's largest region."""
    if not answer.defective or not answer.regions:
        return FREE
    largest = max(answer.regions, key=lambda region: region.area)
    return (largest.class_name or "defect").capitalize()


def _share(scores: list[TileScore]) -> float:
    if not scores:
        return 1.0
    return round(float(np.mean([s.predicted_label == s.label for s in scores])), 4)
