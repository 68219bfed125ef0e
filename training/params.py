"""The pipeline's settings, read from params.yaml in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PARAMS_FILE = Path("params.yaml")


def load_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """All sections of params.yaml as nested dicts."""
    with path.open() as file:
        return yaml.safe_load(file)
