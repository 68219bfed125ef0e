"""One run of `python -m batch`: find the photos, load the model, claim --out, score the
photos without a result on the chosen engine, then sort the results and summarise them."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from batch.local import run_local
from batch.output import SUMMARY, OutputError, OutputFolder
from batch.photos import InputError, Photo, find_photos, is_uri
from batch.progress import Progress
from batch.scoring import Scorer
from service.config import Settings
from service.contract import ModelError
from service.segmenter import Segmenter

USAGE_ERROR = 2


def run(options: argparse.Namespace, settings: Settings) -> int:
    """The exit status: 0 when every photo has a result, 1 when some failed or --out could
    not be written, 2 for a mistake in the command."""
    out: Path = options.out
    model: Path = options.model or settings.model_path
    try:
        on_ray = _ray_engine() if options.engine == "ray" else None
        photos = _photos(options.input, on_ray, out)
        segmenter = Segmenter.from_onnx(
            model, settings.ort_providers, settings.inference_threads, settings.model_sha256
        )
    except (InputError, ModelError) as error:
        return _fail(str(error), USAGE_ERROR)
    scorer = Scorer(segmenter, settings.max_image_pixels, options.labels, options.overlay)
    folder = OutputFolder(out)
    given = options.input if is_uri(options.input) else str(Path(options.input).absolute())
    try:
        finished = folder.open(
            {
                "input": given,
                "model_sha256": scorer.model["model_sha256"],
                "labels": options.labels,
                "overlay": options.overlay,
            }
        )
        pending = [photo for photo in photos if photo.photo not in finished]
        progress = Progress(len(pending), sys.stderr, options.log_every)
        started = time.monotonic()
        if pending:
            if on_ray is None:
                run_local(pending, scorer, folder, progress, settings.max_body_bytes)
            else:
                sha256 = scorer.model["model_sha256"]
                on_ray.run_on_ray(pending, options, settings, model, sha256, folder, progress)
        progress.close()
        seconds = time.monotonic() - started
        lines = folder.finish()
        summary = _summary(lines, len(pending), seconds, options.engine)
        folder.write(SUMMARY, (json.dumps(summary, indent=2) + "\n").encode())
    except OutputError as error:
        return _fail(str(error), USAGE_ERROR)
    except OSError as error:
        return _fail(f"Writing the results to {out} failed ({error}).", 1)
    except KeyboardInterrupt:
        return _fail("Interrupted; run the same command again to score the remaining photos.", 130)
    finally:
        folder.close()
    print(
        f"{summary['photos']} photos: {summary['defective']} defective, {summary['failed']} "
        f"failed; {summary['scored']} scored at {summary['photos_per_second']} photos/s, "
        f"{summary['already_done']} done before. Results: {out / 'results.jsonl'}"
    )
    return 1 if summary["failed"] else 0


def _photos(given: str, on_ray: ModuleType | None, out: Path) -> list[Photo]:
    if not is_uri(given):
        return find_photos(given, out)
    if on_ray is None:
        raise InputError(f"Object-store folders such as {given} are read with --engine ray.")
    return on_ray.find_uri_photos(given)


def _ray_engine() -> ModuleType:
    """batch.on_ray, imported only for --engine ray: Ray is an optional extra."""
    try:
        from batch import on_ray
    except ImportError:
        raise InputError("--engine ray needs Ray: pip install -r requirements/ray.txt.") from None
    return on_ray


def _summary(
    lines: list[dict[str, Any]], scored: int, seconds: float, engine: str
) -> dict[str, Any]:
    return {
        "photos": len(lines),
        "defective": sum(1 for line in lines if line.get("defective")),
        "failed": sum(1 for line in lines if line.get("error")),
        "scored": scored,
        "already_done": len(lines) - scored,
        "seconds": round(seconds, 2),
        "photos_per_second": round(scored / seconds, 1) if scored else 0.0,
        "engine": engine,
    }


def _fail(sentence: str, status: int) -> int:
    print(f"error: {sentence}", file=sys.stderr)
    return status
