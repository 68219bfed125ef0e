"""The dataset for tests, benchmarks, the reliability suite and reports: the pipeline's own
locator (TILE_DATA_DIR, else the cache filled from params.yaml's `data.source`)."""

from __future__ import annotations

from pathlib import Path

from harness import REPO_ROOT
from training.dataset_source import DatasetError, locate_dataset
from training.params import load_params

CLASSES = ("Blowhole", "Break", "Crack", "Fray", "Free", "Uneven")

__all__ = ["CLASSES", "DatasetError", "tile_dataset"]


def tile_dataset() -> Path:
    """The folder holding MT_<Class>/Imgs/<name>.jpg|png; raises DatasetError saying why not."""
    root = locate_dataset(str(load_params(REPO_ROOT / "params.yaml")["data"]["source"]))
    missing = [name for name in CLASSES if not (root / f"MT_{name}" / "Imgs").is_dir()]
    if missing:
        raise DatasetError(
            f"the dataset at {root} lacks MT_{missing[0]}/Imgs; point TILE_DATA_DIR at the "
            "full Magnetic Tile Defect dataset in its original layout."
        )
    return root
