"""The service's own HTTP app with PyTorch eager in place of onnxruntime (a baseline only).

`python -m benchmarks.torch_server --checkpoint models/checkpoint.pt --min-area 16`, with
the service's environment variables (HOST, PORT, MODEL_PATH for /info) as for
`python -m service`. Everything but the runner is the service's code, so the difference
in latency, memory and start time is what torch costs against onnxruntime.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import uvicorn

from service.config import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--min-area", type=int, required=True)
    args = parser.parse_args(argv)
    settings = Settings.from_env()

    from benchmarks.baselines import torch_segmenter
    from service.app import create_app

    segmenter = torch_segmenter(args.checkpoint, args.min_area)
    uvicorn.run(
        create_app(settings, segmenter),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        lifespan="on",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
