"""`python -m service`: check the settings, load the model, then serve with uvicorn.

Configuration and model problems end the process before it listens, with one line on
stderr and a non-zero exit code, so a bad deployment fails at once and says why.
"""

from __future__ import annotations

import copy
import os
import signal
import sys
from types import FrameType
from typing import Any

import uvicorn

from service.config import Settings, SettingsError

# Seconds that requests in flight get to finish after SIGTERM; below the usual 30 s a
# platform (Heroku, Kubernetes) waits before it sends SIGKILL.
GRACEFUL_SHUTDOWN_SECONDS = 25


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # OpenCV reads its own decoder limit once, from the environment; set it before
    # anything imports cv2, so that it agrees with the limit checked on image headers.
    os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(settings.max_image_pixels)
    from service.app import create_app, load_segmenter
    from service.segmenter import ModelError

    try:
        segmenter = load_segmenter(settings)
    except ModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    # uvicorn re-raises the SIGTERM that stopped it once its graceful shutdown is done;
    # being stopped by the platform is a normal end, so exit 0 rather than "killed".
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(
        create_app(settings, segmenter),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=_log_config(settings.log_level),
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    return 0


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging, with the service's own logger printed the same way."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["service"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    return config


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    sys.exit(main())
