"""The environment in which tests and checks run the project's own tools (dvc, git) in a
temporary repository: this interpreter's tools first on PATH, no analytics calls, and a
git identity for the commits DVC experiments make."""

from __future__ import annotations

import os
import sys
from pathlib import Path

TOOL_VARIABLES = {
    "DVC_NO_ANALYTICS": "1",
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@localhost",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@localhost",
}


def tool_environment(*, without: tuple[str, ...] = ()) -> dict[str, str]:
    """os.environ, less the variables named in `without`, with TOOL_VARIABLES and this
    interpreter's folder (where pip put dvc) first on PATH."""
    environment = {k: v for k, v in os.environ.items() if k not in without}
    return {
        **environment,
        **TOOL_VARIABLES,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
