"""`python -m batch INPUT --out DIR`: score an archive of photos with the service's model
(batch/command.py); `--help` lists the options."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from batch.options import parse
from service.config import SettingsError, process_settings


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(sys.argv[1:] if argv is None else argv)
    try:
        settings = process_settings()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # cv2 and onnxruntime are imported from here on, after process_settings.
    from batch.command import run

    return run(options, settings)


if __name__ == "__main__":
    sys.exit(main())
