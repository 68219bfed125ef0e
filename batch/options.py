"""The command line of `python -m batch`; a mistake in it exits with status 2 and one
sentence, as argparse does."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

ENGINES = ("local", "ray")


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m batch",
        description=(
            "Score every photo of an archive with the service's model: a PNG mask per "
            "photo and one line per photo in OUT/results.jsonl. Started again with the "
            "same arguments, it scores only the photos without a result."
        ),
        epilog=(
            "Exit status: 0 when every photo was scored, 1 when some failed (their lines "
            "say why), 2 for a mistake in the command. The service's settings apply "
            "(MAX_IMAGE_PIXELS, MAX_BODY_BYTES, ORT_PROVIDERS, INFERENCE_THREADS, "
            "MODEL_SHA256)."
        ),
    )
    parser.add_argument(
        "input",
        help=(
            "a folder (searched for JPEG, PNG, BMP and TIFF files), a glob in quotes "
            "('tiles/**/*.jpg'), or a text file with one photo path per line (relative "
            "ones read from the file's folder); with --engine ray also an object-store "
            "folder (s3://bucket/prefix)"
        ),
    )
    parser.add_argument("--out", required=True, type=Path, help="folder for the results")
    parser.add_argument(
        "--model",
        type=Path,
        help="ONNX model (default: the service's, MODEL_PATH or models/segmenter.onnx)",
    )
    parser.add_argument(
        "--labels", action="store_true", help="also write each photo's class-index PNG"
    )
    parser.add_argument(
        "--overlay", action="store_true", help="also write each photo with its defects drawn"
    )
    parser.add_argument("--engine", choices=ENGINES, default="local", help="default: local")
    parser.add_argument(
        "--ray-address",
        help="Ray cluster to run on (default: RAY_ADDRESS, else a Ray started for this run)",
    )
    parser.add_argument(
        "--log-every",
        type=_positive,
        default=100,
        metavar="N",
        help="when stderr is not a terminal, a progress line every N photos (default 100)",
    )
    options = parser.parse_args(argv)
    if options.ray_address is not None and options.engine != "ray":
        parser.error("--ray-address goes with --engine ray.")
    return options


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value
