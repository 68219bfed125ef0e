"""`python -m batch INPUT --out DIR`: score an archive of photos with the service's model
(batch/command.py); `--help` lists the options."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from batch.options import parse
from service.config import Settings, SettingsError


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(sys.argv[1:] if argv is None else argv)
    # As `python -m service` does: no onnxruntime telemetry, and OpenCV's own bomb guard at
    # the service's pixel limit; both are read once, at import, so before anything imports
    # onnxruntime (ORT_PROVIDERS does, in Settings) or cv2 (batch.command does).
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(settings.max_image_pixels)
    from batch.command import run

    return run(options, settings)


if __name__ == "__main__":
    sys.exit(main())
