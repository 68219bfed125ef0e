"""`python -m service`: check the settings, load the model, then serve it (service/server.py).

Configuration and model problems end the process before it listens, with one line on
stderr and a non-zero exit code, so a bad deployment fails at once and says why.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from service.config import Settings, SettingsError, process_settings
from service.server import serve

if TYPE_CHECKING:
    from service.segmenter import Segmenter


def main(load: Callable[[Settings], Segmenter] | None = None) -> int:
    """Serve until stopped; the exit code says why it ended. `load` replaces the service's
    model loading for the PyTorch baseline (benchmarks/torch_server.py)."""
    try:
        settings = process_settings()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # cv2 and onnxruntime are imported from here on, after process_settings.
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
