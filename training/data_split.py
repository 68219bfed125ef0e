"""Stage data_split: a seeded train/valid/test split of data/manifest.csv, stratified by class.

The split is written as lists of image ids, not as copied files:

    data/split.json   {"seed": 42, "train": [ids], "valid": [ids], "test": [ids]}

Each class sends about `split.test_fraction` of its images to test, then
`split.valid_fraction` of the rest to valid; a class with at least 3 images (or groups)
has at least one in each split.

With `split.group_frames` above 0, the photos of one tile (training/photos.py: a
folder's photos whose frame numbers lie within that many of the next one) stay in one
split, so that test figures say how the network does on tiles it has never seen, not on
other photos of its training tiles. At 0 each photo is split on its own.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import sys
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

from training.params import load_params
from training.photos import tile_groups

MANIFEST_PATH = Path("data/manifest.csv")
SPLIT_PATH = Path("data/split.json")
SPLITS = ("train", "valid", "test")

log = logging.getLogger(__name__)


class SplitError(ValueError):
    """The manifest or the split params cannot give a split; the message says what to do."""


def split_dataset(
    manifest_path: Path,
    split_path: Path,
    seed: int,
    test_fraction: float,
    valid_fraction: float,
    group_frames: int = 0,
) -> dict[str, list[str]]:
    """Split the manifest's images and write `split_path`; returns {"train"|"valid"|"test": ids}."""
    split = stratified_split(
        read_manifest(manifest_path), seed, test_fraction, valid_fraction, group_frames
    )
    split_path.parent.mkdir(parents=True, exist_ok=True)
    split_path.write_text(json.dumps({"seed": seed, **split}, indent=2) + "\n")
    return split


def stratified_split(
    image_classes: Mapping[str, str],
    seed: int,
    test_fraction: float,
    valid_fraction: float,
    group_frames: int = 0,
) -> dict[str, list[str]]:
    """Split image ids (mapped to their class) per class, each tile's photos together when
    `group_frames` is above 0; each list is sorted."""
    for name, fraction in (("test_fraction", test_fraction), ("valid_fraction", valid_fraction)):
        if not 0 <= fraction < 1:
            raise SplitError(f"split.{name} is {fraction}; set it to at least 0 and below 1.")
    by_class: dict[str, list[str]] = defaultdict(list)
    for image, class_name in image_classes.items():
        by_class[class_name].append(image)

    split: dict[str, list[str]] = {name: [] for name in SPLITS}
    for class_name, images in sorted(by_class.items()):
        groups = tile_groups(images, group_frames)
        if len(groups) < 3:
            log.warning(
                "class %s has %d tiles, too few to split: all in train", class_name, len(groups)
            )
            split["train"] += images
            continue
        n_test, n_valid = _split_sizes(len(images), test_fraction, valid_fraction)
        # One generator per class, so adding or resizing a class leaves the others' split alone.
        random.Random(f"{seed}:{class_name}").shuffle(groups)
        taken = {"test": 0, "valid": 0}
        for group in groups:
            name = _destination(taken, len(group), {"test": n_test, "valid": n_valid})
            split[name] += group
            if name in taken:
                taken[name] += len(group)
    return {name: sorted(ids) for name, ids in split.items()}


def read_manifest(path: Path) -> dict[str, str]:
    """Image id -> class, from data/manifest.csv written by data_load."""
    rerun = "run data_load first (`dvc repro data_load`)"
    if not path.is_file():
        raise SplitError(f"{path} does not exist; {rerun}.")
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        if reader.fieldnames is None:
            raise SplitError(f"{path} is empty; {rerun}.")
        if not {"image", "class"} <= set(reader.fieldnames):
            raise SplitError(f"{path} has no image and class columns; {rerun}.")
        image_classes: dict[str, str] = {}
        for row in reader:
            if row["image"] in image_classes:
                raise SplitError(f"{path} lists image {row['image']} twice; {rerun}.")
            image_classes[row["image"]] = row["class"]
    if not image_classes:
        raise SplitError(f"{path} lists no images; {rerun}.")
    return image_classes


def main() -> None:
    """`python -m training.data_split`: params.yaml `split` section -> data/split.json."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    params = load_params()["split"]
    try:
        split = split_dataset(
            MANIFEST_PATH,
            SPLIT_PATH,
            int(params["seed"]),
            float(params["test_fraction"]),
            float(params["valid_fraction"]),
            int(params["group_frames"]),
        )
    except SplitError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    sizes = ", ".join(f"{len(split[name])} {name}" for name in SPLITS)
    log.info("wrote %s: %s", SPLIT_PATH, sizes)


def _destination(taken: dict[str, int], size: int, targets: dict[str, int]) -> str:
    """Where the next tile of a class goes: test while it holds fewer photos than its
    target (by more than half the tile), then valid the same way, then train; test and
    valid each get at least one tile."""
    for name in ("test", "valid"):
        if taken[name] == 0 or taken[name] + size / 2 <= targets[name]:
            return name
    return "train"


def _split_sizes(n: int, test_fraction: float, valid_fraction: float) -> tuple[int, int]:
    """How many of a class's `n` images (at least 3) go to test and to valid."""
    n_test = min(max(round(n * test_fraction), 1), n - 2)
    n_valid = min(max(round((n - n_test) * valid_fraction), 1), n - n_test - 1)
    return n_test, n_valid


if __name__ == "__main__":
    main()
