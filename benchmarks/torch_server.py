"""The service's own HTTP app with PyTorch eager in place of onnxruntime (a baseline only).

`python -m benchmarks.torch_server --checkpoint models/checkpoint.pt`, with the service's
environment variables as for `python -m service`. MODEL_PATH names the ONNX file exported
from that checkpoint: its input policy, threshold and metadata are served. Everything but
the runner is the service's code, start and server included, so the difference in
latency, memory and start time is what torch costs against onnxruntime.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from service.__main__ import main as run_service
from service.config import Settings

if TYPE_CHECKING:
    from service.segmenter import Segmenter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    args = parser.parse_args(argv)

    # Imported in `load`, after the service has set its limits for the image decoders.
    def load(settings: Settings) -> Segmenter:
        from benchmarks.baselines import torch_segmenter
        from service.segmenter import Segmenter

        # Only read for its card: its onnxruntime session is freed on return, so that it
        # does not count in the baseline's memory.
        served = Segmenter.from_onnx(settings.model_path, providers=["CPUExecutionProvider"])
        return torch_segmenter(args.checkpoint, served)

    return run_service(load)


if __name__ == "__main__":
    sys.exit(main())
