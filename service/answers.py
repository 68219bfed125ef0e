"""What the service says about one photo, as JSON-ready values.

The API's `?format=json` answer and the batch command's results lines are built here, so
the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from service.regions import Region, Segmentation


def describe(segmentation: Segmentation) -> dict[str, Any]:
    """The decision, the score behind it and the regions, for one photo (the rule is in
    service/regions.py)."""
    return {
        "defective": segmentation.defective,
        "score": round(segmentation.score, 4),
        "decision_threshold": segmentation.decision_threshold,
        "threshold": segmentation.threshold,
        "regions_threshold": segmentation.regions_threshold,
        "defect_fraction": round(segmentation.defect_fraction, 6),
        "regions": [_region(region) for region in segmentation.regions],
    }


def _region(region: Region) -> dict[str, Any]:
    return {
        "x": region.x,
        "y": region.y,
        "width": region.width,
        "height": region.height,
        "area": region.area,
        "mean_probability": region.mean_probability,
        "class": region.class_name,
        "class_probabilities": region.class_probabilities,
    }
