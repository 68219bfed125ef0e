"""Stage data_load: the Magnetic Tile Defect dataset as images, binary masks and a manifest.

The source (params.yaml `data.source`) is an http(s) URL of a zip archive, a local zip or
a local folder; each holds `MT_<Class>/Imgs/<name>.jpg` with same-named `.png` masks at
its top or one level down. The output is the same bytes whichever kind of source it was:

    data/raw/MT_<Class>/<name>.jpg   the original JPEG, unchanged
    data/raw/MT_<Class>/<name>.png   the mask: 255 where >= data.mask_threshold, else 0
    data/manifest.csv                image,class,width,height,defect_pixels (sorted by image)

The output is built in a staging folder and renamed into place when complete, so a
failed run leaves the previous output, if any, exactly as it was.
"""

from __future__ import annotations

import csv
import http.client
import logging
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import astuple, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from training.params import load_params

RAW_DIR = Path("data/raw")
MANIFEST_PATH = Path("data/manifest.csv")
MANIFEST_HEADER = ("image", "class", "width", "height", "defect_pixels")
FREE_CLASS = "Free"
DOWNLOAD_TIMEOUT_S = 60.0

log = logging.getLogger(__name__)

Describe = Callable[[Path], str]
"""Names a file of the unpacked source as the user knows it (in their folder, zip or URL)."""


class DatasetError(ValueError):
    """The source cannot give a complete, consistent dataset; the message says what to do."""


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
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> list[ManifestRow]:
    """Write `out_dir` and `manifest_path` from `source`; raise DatasetError on bad input."""
    if not 0 < mask_threshold <= 255:
        raise DatasetError(f"data.mask_threshold is {mask_threshold}; set it to 1..255.")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Staging beside the output keeps the final renames on one filesystem.
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-staging-", dir=out_dir.parent))
    try:
        root, describe = _unpack(source, staging / "source", timeout)
        rows = _convert(
            _find_dataset_root(root, describe), staging / "raw", mask_threshold, describe
        )
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
            str(params["source"]), RAW_DIR, MANIFEST_PATH, int(params["mask_threshold"])
        )
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    log.info("wrote %d images to %s and %s", len(rows), RAW_DIR, MANIFEST_PATH)


def _unpack(source: str, scratch: Path, timeout: float) -> tuple[Path, Describe]:
    """A local folder with the source's files, downloading and extracting as needed."""
    if "://" in source:
        scheme = urllib.parse.urlsplit(source).scheme
        if scheme not in ("http", "https"):
            raise DatasetError(
                f"data.source {source} has the unsupported URL scheme '{scheme}'; "
                "use an http(s) URL, a local folder or a local zip."
            )
        scratch.mkdir()
        _download(source, scratch / "download.zip", timeout)
        return _extract(scratch / "download.zip", scratch / "files", source)
    path = Path(source).expanduser()
    if path.is_dir():
        return path, str
    if not path.exists():
        raise DatasetError(
            f"data.source {path} does not exist; set it to the dataset's folder, zip or URL."
        )
    return _extract(path, scratch / "files", str(path))


def _download(url: str, dest: Path, timeout: float) -> None:
    advice = "download the archive yourself and set data.source to its local path"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, dest.open("wb") as file:
            total = response.headers.get("Content-Length")
            with tqdm(total=int(total) if total else None, unit="B", unit_scale=True) as bar:
                while chunk := response.read(1 << 20):
                    file.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as error:
        raise DatasetError(
            f"the download of {url} failed with HTTP {error.code} {error.reason}; "
            f"check data.source or {advice}."
        ) from None
    except (OSError, http.client.HTTPException) as error:
        # Refused connections and timeouts are OSErrors; a body cut short is IncompleteRead.
        reason = getattr(error, "reason", None) or error
        raise DatasetError(
            f"the download of {url} failed ({reason}); check the network or {advice}."
        ) from None


def _extract(archive: Path, dest: Path, label: str) -> tuple[Path, Describe]:
    try:
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(dest)  # sanitises member names: no absolute paths, no `..`
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as error:
        raise DatasetError(
            f"{label} is not a readable zip archive ({error}); download it again "
            "or set data.source to the unpacked dataset folder."
        ) from None

    def describe(path: Path) -> str:
        return label if path == dest else f"{path.relative_to(dest).as_posix()} in {label}"

    return dest, describe


def _find_dataset_root(root: Path, describe: Describe) -> Path:
    """The folder holding the MT_* folders: `root` itself or one of its subfolders."""
    if _class_dirs(root):
        return root
    holders = [sub for sub in sorted(root.iterdir()) if sub.is_dir() and _class_dirs(sub)]
    if len(holders) == 1:
        return holders[0]
    if not holders:
        raise DatasetError(
            f"{describe(root)} has no MT_* folders at its top or one level down; "
            "set data.source to the Magnetic Tile Defect dataset."
        )
    raise DatasetError(
        f"{describe(root)} has MT_* folders in several subfolders "
        f"({', '.join(h.name for h in holders)}); set data.source to one of them."
    )


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(path for path in folder.glob("MT_*") if path.is_dir())


def _convert(root: Path, out_dir: Path, threshold: int, describe: Describe) -> list[ManifestRow]:
    """Copy each image, write its binarised mask, and return the sorted manifest rows."""
    pairs: list[tuple[str, Path]] = []
    for class_dir in _class_dirs(root):
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


def _write_manifest(rows: list[ManifestRow], path: Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(MANIFEST_HEADER)
        writer.writerows(astuple(row) for row in rows)


if __name__ == "__main__":
    main()
