"""Where the Magnetic Tile Defect dataset is, in its original layout, and how it gets there.

One locator for the whole project (the `data_load` stage, tests, benchmarks, the
reliability suite): `TILE_DATA_DIR` when set, else a per-user cache folder filled on first
use from params.yaml's `data.source` (the public archive's URL, or a local zip or folder).
The location is no input of the pipeline; the content is: `fingerprint` hashes the files
that `data_load` reads, and params.yaml's `data.fingerprint` names the expected value.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

DATA_DIR_VARIABLE = "TILE_DATA_DIR"
DOWNLOAD_TIMEOUT_S = 60.0
ADVICE = f"set {DATA_DIR_VARIABLE} to a copy of the dataset"

Describe = Callable[[Path], str]
"""Names a file of the unpacked source as the user knows it (in their folder, zip or URL)."""


class DatasetError(ValueError):
    """The source cannot give a complete, consistent dataset; the message says what to do."""


def locate_dataset(source: str, *, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """The folder holding the MT_* folders: `TILE_DATA_DIR`, else `source` unpacked (cached)."""
    override = os.environ.get(DATA_DIR_VARIABLE)
    if override:
        folder = Path(override).expanduser()
        if not folder.is_dir():
            raise DatasetError(
                f"{DATA_DIR_VARIABLE} is {override}, which is not a folder; point it at the "
                "folder holding the MT_* folders, or unset it to download the dataset."
            )
        return find_dataset_root(folder, str)
    root, _ = unpack(source, timeout=timeout)
    return root


def unpack(source: str, *, timeout: float = DOWNLOAD_TIMEOUT_S) -> tuple[Path, Describe]:
    """The dataset root of `source`: a local folder as it is, a zip or URL extracted once
    into the cache (a later call finds it there without downloading)."""
    if "://" not in source:
        path = Path(source).expanduser()
        if path.is_dir():
            return find_dataset_root(path, str), str
        if not path.exists():
            raise DatasetError(
                f"data.source {path} does not exist; set it to the dataset's folder, zip or URL, "
                f"or {ADVICE}."
            )
    else:
        scheme = urllib.parse.urlsplit(source).scheme
        if scheme not in ("http", "https"):
            raise DatasetError(
                f"data.source {source} has the unsupported URL scheme '{scheme}'; "
                "use an http(s) URL, a local folder or a local zip."
            )
    entry = cache_dir() / hashlib.sha256(source.encode()).hexdigest()[:16]
    if not entry.is_dir():
        _fill(entry, source, timeout)

    def describe(path: Path) -> str:
        return source if path == entry else f"{path.relative_to(entry).as_posix()} in {source}"

    return find_dataset_root(entry, describe), describe


def cache_dir() -> Path:
    """The per-user cache of unpacked archives, after the XDG base directory convention."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tile-defects" / "datasets"


def fingerprint(root: Path) -> str:
    """SHA-256 over the names and bytes of every MT_*/Imgs image and mask under `root`."""
    digest = hashlib.sha256()
    for path in sorted(root.glob("MT_*/Imgs/*")):
        if path.suffix in (".jpg", ".png"):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def find_dataset_root(root: Path, describe: Describe) -> Path:
    """The folder holding the MT_* folders: `root` itself or one of its subfolders."""
    if class_dirs(root):
        return root
    holders = [sub for sub in sorted(root.iterdir()) if sub.is_dir() and class_dirs(sub)]
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


def class_dirs(folder: Path) -> list[Path]:
    return sorted(path for path in folder.glob("MT_*") if path.is_dir())


def _fill(entry: Path, source: str, timeout: float) -> None:
    """Download and extract into a private folder, then rename it into place: two runs at
    once each build their own, the first rename wins, and nobody sees half a dataset."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
    try:
        if "://" in source:
            archive = scratch / "download.zip"
            _download(source, archive, timeout)
        else:
            archive = Path(source).expanduser()
        _extract(archive, scratch / "files", source)
        try:
            (scratch / "files").rename(entry)
        except OSError:  # another run renamed its copy first
            if not entry.is_dir():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _download(url: str, dest: Path, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, dest.open("wb") as file:
            total = response.headers.get("Content-Length")
            expected = int(total) if total and total.isdigit() else None
            with tqdm(total=expected, unit="B", unit_scale=True, desc="dataset") as bar:
                while chunk := response.read(1 << 20):
                    file.write(chunk)
                    bar.update(len(chunk))
        received = dest.stat().st_size
        if expected is not None and received != expected:
            raise http.client.IncompleteRead(b"", expected - received)
    except urllib.error.HTTPError as error:
        raise DatasetError(
            f"could not download {url}: HTTP {error.code} {error.reason}; "
            f"check data.source or {ADVICE}."
        ) from None
    except (OSError, http.client.HTTPException) as error:
        # Refused connections and timeouts are OSErrors; a body cut short is IncompleteRead.
        reason = getattr(error, "reason", None) or repr(error)
        raise DatasetError(f"could not download {url}: {reason}; {ADVICE}.") from None


def _extract(archive: Path, dest: Path, label: str) -> None:
    try:
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(dest)  # sanitises member names: no absolute paths, no `..`
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as error:
        raise DatasetError(
            f"{label} is not a readable zip archive ({error}); download it again "
            "or set data.source to the unpacked dataset folder."
        ) from None
