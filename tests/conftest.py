"""Shared fixtures: small real copies of the Magnetic Tile Defect dataset, zips, an HTTP server.

The full dataset comes from the project's locator (TILE_DATA_DIR, else the per-user cache
that the pipeline's own download code fills); tests copy the few files they need into
tmp_path and never write to it.
"""

from __future__ import annotations

import shutil
import threading
import zipfile
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.dataset import CLASSES, DatasetError, tile_dataset

GITHUB_TOP_FOLDER = "Magnetic-tile-defect-datasets.-master"
"""The single top folder of the public archive that GitHub serves."""


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The full read-only dataset in its original layout: MT_<Class>/Imgs/<name>.jpg|png."""
    try:
        return tile_dataset()
    except DatasetError as error:
        pytest.fail(str(error))


@pytest.fixture
def copy_dataset(shared_data_dir: Path) -> Callable[..., Path]:
    """Factory `copy(dest, per_class=3)`: the first images of each class, with masks, in
    the original layout under `dest`; returns `dest`."""

    def copy(dest: Path, per_class: int = 3) -> Path:
        for name in CLASSES:
            source = shared_data_dir / f"MT_{name}" / "Imgs"
            target = dest / f"MT_{name}" / "Imgs"
            target.mkdir(parents=True)
            for image in sorted(source.glob("*.jpg"))[:per_class]:
                shutil.copyfile(image, target / image.name)
                shutil.copyfile(image.with_suffix(".png"), target / f"{image.stem}.png")
        return dest

    return copy


@pytest.fixture
def dataset_dir(tmp_path: Path, copy_dataset: Callable[..., Path]) -> Path:
    """tmp_path/dataset holding 3 real images per class (18 in all) with their masks."""
    return copy_dataset(tmp_path / "dataset")


@pytest.fixture
def make_zip() -> Callable[..., Path]:
    """Factory `make_zip(folder, dest, top=None)`: zip the files under `folder` into `dest`,
    inside a single folder `top` when given (as GitHub's archive does); returns `dest`."""

    def make(folder: Path, dest: Path, top: str | None = None) -> Path:
        with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.rglob("*")):
                name = path.relative_to(folder).as_posix()
                archive.write(path, f"{top}/{name}" if top else name)
        return dest

    return make


@pytest.fixture
def dataset_zip(tmp_path: Path, dataset_dir: Path, make_zip: Callable[..., Path]) -> Path:
    """dataset_dir zipped like the public GitHub archive, one top folder over the MT_* folders."""
    return make_zip(dataset_dir, tmp_path / "master.zip", GITHUB_TOP_FOLDER)


@pytest.fixture
def http_serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path], str]]:
    """Factory `serve(folder) -> base URL`: a ThreadingHTTPServer on 127.0.0.1 serving the
    folder's files (404 for others), stopped after the test."""
    # A proxy configured in the environment must not intercept requests to this server.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    servers: list[ThreadingHTTPServer] = []

    def serve(folder: Path) -> str:
        handler = partial(_QuietHandler, directory=str(folder))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output to what fails
