"""Stage `evaluate`: score the trained network on the test split at original resolution.

Run as `python -m training.evaluate`, after `calibrate`. The tiles go through the service's own
preprocessing and postprocessing (a Segmenter with a torch runner), uncropped.
Writes metrics, plot data (ROC, per-class Dice and IoU, the tiles' class confusion),
overlay pictures for reports and one sheet of the tiles the decision got wrong.
"""

from __future__ import annotations

import json
from typing import Any

import cv2

from service.regions import Segmentation
from service.segmenter import Prediction, Segmenter
from training.checkpoint import load_checkpoint
from training.dataset import Tile, load_tiles
from training.params import load_params
from training.pictures import error_sheet, triptych
from training.scoring import (
    TileScore,
    predict_tiles,
    recall_at_free_flagged,
    roc_points,
    score_tiles,
    summarise,
)
from training.served import EVALUATION_DIR, EVALUATION_METRICS, served_segmenter

ERROR_SHEET = EVALUATION_DIR / "errors.jpg"


def main() -> None:
    evaluate(load_params())


def evaluate(params: dict[str, Any]) -> dict:
    """Write reports/evaluate/ and return the metrics."""
    segmenter = served_segmenter(load_checkpoint())
    tiles = load_tiles("test")
    predictions = predict_tiles(segmenter, tiles)
    scores = score_tiles(segmenter, tiles, predictions)
    metrics = {
        "threshold": segmenter.threshold,
        "decision_threshold": segmenter.decision_threshold,
        **summarise(scores, params["split"]["group_frames"]),
        "roc": recall_at_free_flagged(scores, params["calibrate"]["max_free_flagged"]),
    }
    write_reports(metrics, scores, tiles, predictions, segmenter, params["evaluate"])
    print(json.dumps(metrics, indent=2))
    return metrics


def write_reports(
    metrics: dict,
    scores: list[TileScore],
    tiles: list[Tile],
    predictions: list[Prediction],
    segmenter: Segmenter,
    settings: dict[str, int],
) -> None:
    """Metrics JSON, plot data for `dvc plots`, input | truth | prediction pictures and the
    sheet of the decision's errors."""
    plots = EVALUATION_DIR / "plots"
    pictures = EVALUATION_DIR / "overlays"
    for folder in (plots, pictures):
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
    EVALUATION_METRICS.write_text(json.dumps(metrics, indent=2) + "\n")
    (plots / "roc.json").write_text(json.dumps(roc_points(scores), indent=1) + "\n")
    per_class = [{"class": k, "dice": v} for k, v in metrics["per_class_dice"].items()]
    (plots / "per_class_dice.json").write_text(json.dumps(per_class, indent=1) + "\n")
    classes = metrics["classes"]
    per_class_iou = [
        {"class": name, "iou": classes["iou"][name], "dice": classes["dice"][name]}
        for name in classes["iou"]
    ]
    (plots / "per_class_iou.json").write_text(json.dumps(per_class_iou, indent=1) + "\n")
    tile_classes = [{"actual": s.label, "predicted": s.predicted_label} for s in scores]
    (plots / "tile_classes.json").write_text(json.dumps(tile_classes, indent=1) + "\n")
    sheet = error_sheet(tiles, predictions, scores, segmenter, settings["error_tiles"])
    cv2.imwrite(str(ERROR_SHEET), sheet, [cv2.IMWRITE_JPEG_QUALITY, 85])
    for index in _overlay_sample(tiles, settings["overlays"]):
        tile = tiles[index]
        answer = segmenter.postprocess(predictions[index])
        name = tile.id.replace("/", "__")
        picture = triptych(tile.image, tile.mask, answer.mask, _caption(tile.label, answer))
        cv2.imwrite(str(pictures / f"{name}.jpg"), picture)


def _caption(label: str, answer: Segmentation) -> tuple[str, str]:
    """What the truth and the answer say of a tile, in a few words each."""
    if not answer.defective:
        return label.lower(), "pass"
    found = sorted({region.class_name or "defect" for region in answer.regions})
    return label.lower(), "reject, " + "+".join(found)


def _overlay_sample(tiles: list[Tile], count: int) -> list[int]:
    """A fixed sample: a few tiles of each class, spread evenly over the split."""
    labels = sorted({t.label for t in tiles})
    chosen: list[int] = []
    for label in labels:
        indices = [i for i, t in enumerate(tiles) if t.label == label]
        per_class = max(1, count // len(labels))
        chosen += indices[:: max(1, len(indices) // per_class)][:per_class]
    return chosen[:count]


if __name__ == "__main__":
    main()
