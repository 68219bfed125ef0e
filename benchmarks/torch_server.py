"""The service's own HTTP app with PyTorch eager in place of onnxruntime (a baseline only).

`python -m benchmarks.torch_server --checkpoint models/checkpoint.pt`, with the service's
environment variables (HOST, PORT, LOG_LEVEL) as for `python -m service`. MODEL_PATH names
the ONNX file exported from that checkpoint: its input policy, threshold and metadata are
served. Everything but the runner is the service's code, so the difference in latency,
memory and start time is what torch costs against onnxruntime.
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
    args = parser.parse_args(argv)
    settings = Settings.from_env()

    from benchmarks.baselines import torch_segmenter
    from service.app import create_app
    from service.segmenter import Segmenter

    served = Segmenter.from_onnx(settings.model_path, providers=["CPUExecutionProvider"])
    segmenter = torch_segmenter(args.checkpoint, served)
    del served  # its onnxruntime session must not count in the baseline's memory
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
