"""Stage data_load: the Magnetic Tile Defect dataset as images, binary masks and a manifest.

The dataset comes from the project's locator (training/dataset_source.py): `TILE_DATA_DIR`
when set, else params.yaml's `data.source` (the public archive's URL by default, a local
zip or a local folder), unpacked once into a per-user cache. Each holds
`MT_<Class>/Imgs/<name>.jpg` with same-named `.png` masks at its top or one level down.
Its content must have params.yaml's `data.fingerprint`, so the pipeline reruns when the
data changes and not when it moves. The output is the same bytes wherever it came from:

    data/raw/MT_<Class>/<name>.jpg   the original JPEG, unchanged
    data/raw/MT_<Class>/<name>.png   the mask: 255 where >= data.mask_threshold, else 0
    data/manifest.csv                image,class,width,height,defect_pixels (sorted by image)

The output is built in a staging folder and renamed into place when complete, so a
failed run leaves the previous output, if any, exactly as it was.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import astuple, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from training.dataset_source import (
    DOWNLOAD_TIMEOUT_S,
    DatasetError,
    Describe,
    class_dirs,
    fingerprint,
    locate_dataset,
    unpack,
)
from training.params import load_params

RAW_DIR = Path("data/raw")
MANIFEST_PATH = Path("data/manifest.csv")
MANIFEST_HEADER = ("image", "class", "width", "height", "defect_pixels")
FREE_CLASS = "Free"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ManifestRow:
    """One image of the dataset: a row of data/manifest.csv, fields in column order."""

    image: str  # the image id, MT_<Class>/<name>
    class_name: str  # the `class` column, e.g. Blowhole or Free
    width: int
    height: int
    defect_pixels: int


def load_dataset(
    source: str,
    out_dir: Path,
    manifest_path: Path,
    mask_threshold: int,
    *,
    expected_fingerprint: str | None = None,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> list[ManifestRow]:
    """Write `out_dir` and `manifest_path` from `source`, a folder, zip or URL; raise
    DatasetError on bad input, or on content without `expected_fingerprint` when given."""
    if not 0 < mask_threshold <= 255:
        raise DatasetError(f"data.mask_threshold is {mask_threshold}; set it to 1..255.")
    root, describe = unpack(source, timeout=timeout)
    if expected_fingerprint is not None:
        _check_fingerprint(root, expected_fingerprint)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Staging beside the output keeps the final renames on one filesystem.
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-staging-", dir=out_dir.parent))
    try:
        rows = _convert(root, staging / "raw", mask_threshold, describe)
        _write_manifest(rows, staging / "manifest.csv")
        if out_dir.exists():
            out_dir.rename(staging / "old")
        (staging / "raw").rename(out_dir)
        manifest_path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / "manifest.csv", manifest_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return rows


def main() -> None:
    """`python -m training.data_load`: params.yaml `data` section -> data/raw, data/manifest.csv."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    params = load_params()["data"]
    try:
        rows = load_dataset(
            str(locate_dataset(str(params["source"]))),
            RAW_DIR,
            MANIFEST_PATH,
            int(params["mask_threshold"]),
            expected_fingerprint=str(params["fingerprint"]),
        )
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    log.info("wrote %d images to %s and %s", len(rows), RAW_DIR, MANIFEST_PATH)


def _convert(root: Path, out_dir: Path, threshold: int, describe: Describe) -> list[ManifestRow]:
    """Copy each image, write its binarised mask, and return the sorted manifest rows."""
    pairs: list[tuple[str, Path]] = []
    for class_dir in class_dirs(root):
        # The original layout has an Imgs level; this stage's own output has not.
        images_dir = class_dir / "Imgs" if (class_dir / "Imgs").is_dir() else class_dir
        images = sorted(images_dir.glob("*.jpg"))
        if not images:
            raise DatasetError(
                f"{describe(class_dir)} holds no .jpg images; restore them or remove the folder."
            )
        orphans = sorted(set(images_dir.glob("*.png")) - {p.with_suffix(".png") for p in images})
        if orphans:
            raise DatasetError(
                f"mask {describe(orphans[0])} has no image {orphans[0].stem}.jpg; "
                "add the image or remove the mask."
            )
        pairs += [(class_dir.name, image) for image in images]

    # Closing the bar before an error propagates keeps `error: ...` on a line of its own.
    with tqdm(pairs, desc="data_load", unit="image") as progress:
        rows = [
            _convert_pair(image, out_dir / class_dir_name, threshold, describe)
            for class_dir_name, image in progress
        ]
    empty = [row.image for row in rows if row.defect_pixels == 0 and row.class_name != FREE_CLASS]
    if empty:
        # Allowed (the public dataset has four), but worth knowing when reading defect metrics.
        log.warning("%d masks in defect classes are empty: %s", len(empty), ", ".join(empty))
    return sorted(rows, key=lambda row: row.image)


def _convert_pair(
    image_path: Path, out_dir: Path, threshold: int, describe: Describe
) -> ManifestRow:
    mask_path = image_path.with_suffix(".png")
    if not mask_path.is_file():
        raise DatasetError(
            f"image {describe(image_path)} has no mask {mask_path.name}; add the mask "
            "(all black if the tile has no defect) or remove the image."
        )
    image_bytes = image_path.read_bytes()
    image = _decode(image_bytes, image_path, describe)
    mask = _decode(mask_path.read_bytes(), mask_path, describe)
    if mask.shape != image.shape:
        raise DatasetError(
            f"mask {describe(mask_path)} is {mask.shape[1]}x{mask.shape[0]} px but its image is "
            f"{image.shape[1]}x{image.shape[0]} px; fix or remove the pair."
        )
    binary = np.where(mask >= threshold, 255, 0).astype(np.uint8)

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / image_path.name).write_bytes(image_bytes)
    # An explicit compression level keeps the PNG bytes independent of OpenCV's default.
    if not cv2.imwrite(str(out_dir / mask_path.name), binary, [cv2.IMWRITE_PNG_COMPRESSION, 6]):
        raise OSError(f"could not write {out_dir / mask_path.name}")
    return ManifestRow(
        image=f"{out_dir.name}/{image_path.stem}",
        class_name=out_dir.name.removeprefix("MT_"),
        width=image.shape[1],
        height=image.shape[0],
        defect_pixels=int(np.count_nonzero(binary)),
    )


def _decode(data: bytes, path: Path, describe: Describe) -> np.ndarray:
    # imdecode asserts on an empty buffer instead of returning None.
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE) if data else None
    if image is None:
        raise DatasetError(
            f"{describe(path)} is not a readable image (corrupt or truncated); "
            "restore it from the original dataset or remove the pair."
        )
    return image


def _check_fingerprint(root: Path, expected: str) -> None:
    actual = fingerprint(root)
    if actual != expected:
        raise DatasetError(
            f"the dataset at {root} has fingerprint {actual}, not the {expected} of params.yaml's "
            "data.fingerprint; restore the original data (or delete that folder if it is the "
            "download cache), or, to train on this data, run "
            f"`dvc exp run -S data.fingerprint={actual}`."
        )


def _write_manifest(rows: list[ManifestRow], path: Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(MANIFEST_HEADER)
        writer.writerows(astuple(row) for row in rows)


if __name__ == "__main__":
    main()
