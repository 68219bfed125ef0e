"""`python -m service`: check the settings, load the model, then serve it (service/server.py).

Configuration and model problems end the process before it listens, with one line on
stderr and a non-zero exit code, so a bad deployment fails at once and says why.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from service.config import Settings, SettingsError
from service.server import serve

if TYPE_CHECKING:
    from service.segmenter import Segmenter


def main(load: Callable[[Settings], Segmenter] | None = None) -> int:
    """Serve until stopped; the exit code says why it ended. `load` replaces the service's
    model loading for the PyTorch baseline (benchmarks/torch_server.py)."""
    # onnxruntime (1.32 on Linux) starts a telemetry client when it loads, which writes
    # $TMPDIR/.ses and may call out to Microsoft's collector; a factory API must do
    # neither. Set before anything imports onnxruntime (ORT_PROVIDERS does, in Settings).
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # OpenCV's own bomb guard, behind the check of each image header, with the same limit.
    # OpenCV reads it once, when cv2 is imported: service.app, below, is the first import.
    os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(settings.max_image_pixels)
    from service.app import create_app, load_segmenter
    from service.contract import ModelError

    try:
        segmenter = (load or load_segmenter)(settings)
    except ModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    serve(create_app(settings, segmenter), settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
