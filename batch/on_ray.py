"""The Ray Data engine: the local engine's job spread over a Ray cluster.

    read     Ray tasks: each photo's bytes, from a path every node sees or an object store
    segment  map_batches on a pool of actors, each holding one onnxruntime Segmenter and
             turning bytes into results lines and pictures with batch.scoring, as the
             local engine does
    write    the driver, into --out, through the same resumable OutputFolder

Ray is an optional extra (requirements/ray.txt): only `--engine ray` imports this module.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import posixpath
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs
import ray
import ray.data

from batch.output import OutputFolder
from batch.photos import (
    IMAGE_SUFFIXES,
    InputError,
    Photo,
    PhotoError,
    check_size,
    is_uri,
    read_photo,
)
from batch.progress import Progress
from batch.scoring import KINDS, Outcome, Scorer
from service.config import Settings
from service.segmenter import Segmenter

# Rows per call of each stage: large enough that Ray's per-call cost vanishes next to a
# photo's ~25 ms, small enough that every actor gets work on a few hundred photos.
READ_BATCH = 16
SEGMENT_BATCH = 8


def find_uri_photos(uri: str) -> list[Photo]:
    """The JPEG, PNG, BMP and TIFF files under an object-store folder, sorted."""
    try:
        filesystem, base = pyarrow.fs.FileSystem.from_uri(uri)
        found = filesystem.get_file_info(pyarrow.fs.FileSelector(base, recursive=True))
    except (OSError, ValueError) as error:  # pyarrow's errors derive from these
        raise InputError(f"{uri} could not be listed ({_first_line(error)}).") from None
    names = sorted(
        posixpath.relpath(info.path, base)
        for info in found
        if info.type == pyarrow.fs.FileType.File
        and posixpath.splitext(info.path)[1].lower() in IMAGE_SUFFIXES
    )
    if not names:
        raise InputError(f"{uri} holds no JPEG, PNG, BMP or TIFF files.")
    prefix = uri.rstrip("/")
    return [
        Photo(photo=f"{prefix}/{name}", name=name, source=posixpath.join(base, name))
        for name in names
    ]


def run_on_ray(
    photos: list[Photo],
    options: argparse.Namespace,
    settings: Settings,
    model: Path,
    sha256: str,
    folder: OutputFolder,
    progress: Progress,
) -> None:
    """Score `photos` into `folder` on the Ray cluster at --ray-address (default:
    RAY_ADDRESS, else a Ray started for this run); the actors get `model`'s bytes from
    here, so the nodes need no copy of it."""
    ray.init(address=options.ray_address, logging_level=logging.WARNING)
    # The command draws its own progress; Ray Data's bars and notes on the terminal would
    # interleave with it. Its log file in the Ray session keeps every note.
    ray.data.DataContext.get_current().enable_progress_bars = False
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setLevel(logging.ERROR)
    # One onnxruntime thread per actor unless INFERENCE_THREADS says otherwise, and as many
    # actors as the cluster has cores for: the cores stay busy without contending.
    threads = settings.inference_threads or 1
    rows = [{"photo": p.photo, "name": p.name, "source": p.source} for p in photos]
    scored = (
        ray.data.from_items(rows)
        .map_batches(
            read_batch,
            fn_kwargs={
                "filesystem_uri": options.input if is_uri(options.input) else None,
                "max_bytes": settings.max_body_bytes,
            },
            batch_size=READ_BATCH,
            num_cpus=0.25,  # it waits on storage, and must not starve the actors of cores
        )
        .map_batches(
            SegmentPhotos,
            fn_constructor_kwargs={
                # Held by the driver until the run ends: an actor that Ray restarts
                # still finds it.
                "model": ray.put(model.read_bytes()),
                "sha256": sha256,
                "providers": settings.ort_providers,
                "threads": threads,
                "max_pixels": settings.max_image_pixels,
                "labels": options.labels,
                "overlay": options.overlay,
            },
            compute=ray.data.ActorPoolStrategy(min_size=1),
            batch_size=SEGMENT_BATCH,
            num_cpus=threads,
            # OpenCV reads its own pixel limit once, at import: set before the actor's.
            runtime_env={"env_vars": _worker_environment(settings)},
        )
    )
    for row in scored.iter_rows():
        line = json.loads(row["line"])
        folder.record(Outcome(line, {kind: bytes(row[kind]) for kind in line["files"]}))
        progress.advance()


def read_batch(
    batch: dict[str, np.ndarray], filesystem_uri: str | None, max_bytes: int
) -> dict[str, Any]:
    """Each row's photo bytes, or the sentence saying why they could not be read; the
    sources are paths in the filesystem of `filesystem_uri` when given, else local."""
    data, errors = [], []
    for source in batch["source"]:
        try:
            if filesystem_uri is None:
                data.append(read_photo(str(source), max_bytes))
            else:
                data.append(_read(filesystem_uri, str(source), max_bytes))
            errors.append("")
        except PhotoError as error:
            data.append(b"")
            errors.append(str(error))
    return {**batch, "data": data, "error": errors}


class SegmentPhotos:
    """A Ray actor: one model, loaded once, scoring batch after batch."""

    def __init__(
        self,
        model: ray.ObjectRef,
        sha256: str,
        providers: tuple[str, ...] | None,
        threads: int,
        max_pixels: int,
        labels: bool,
        overlay: bool,
    ) -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "segmenter.onnx"
            path.write_bytes(ray.get(model))
            segmenter = Segmenter.from_onnx(path, providers, threads, sha256)
        self.scorer = Scorer(segmenter, max_pixels, labels, overlay)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        lines: list[str] = []
        pictures: dict[str, list[bytes]] = {kind: [] for kind in KINDS}
        for photo, name, source, data, error in zip(
            batch["photo"],
            batch["name"],
            batch["source"],
            batch["data"],
            batch["error"],
            strict=True,
        ):
            given = Photo(photo=str(photo), name=str(name), source=str(source))
            if error:
                outcome = self.scorer.failure(given, str(error))
            else:
                outcome = self.scorer.score(given, bytes(data))
            lines.append(json.dumps(outcome.line))
            for kind in KINDS:
                pictures[kind].append(outcome.pictures.get(kind, b""))
        return {"line": lines, **pictures}


def _read(filesystem_uri: str, path: str, max_bytes: int) -> bytes:
    try:
        with _filesystem(filesystem_uri).open_input_stream(path) as stream:
            data = stream.read(max_bytes + 1)
    except OSError as error:
        raise PhotoError(f"The photo could not be read: {_first_line(error)}.") from None
    return check_size(data, max_bytes)


@functools.cache
def _filesystem(uri: str) -> pyarrow.fs.FileSystem:
    """One client per worker: opening one per photo would cost a round of credential and
    region look-ups each time."""
    return pyarrow.fs.FileSystem.from_uri(uri)[0]


def _worker_environment(settings: Settings) -> dict[str, str]:
    return {
        "OPENCV_IO_MAX_IMAGE_PIXELS": str(settings.max_image_pixels),
        "ORT_DISABLE_TELEMETRY": "1",
    }


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0].rstrip(".")
