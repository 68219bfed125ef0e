"""The dev container sets up the project with the same make target as a developer."""

from __future__ import annotations

import json
import re
import subprocess

from harness import REPO_ROOT


def test_devcontainer_runs_an_existing_setup_target_on_python_3_11() -> None:
    config = json.loads((REPO_ROOT / ".devcontainer/devcontainer.json").read_text())
    assert re.search(r"python:3\.11\b", config["image"])
    extensions = config["customizations"]["vscode"]["extensions"]
    assert {"iterative.dvc", "ms-python.python"} <= set(extensions)
    command = config["postCreateCommand"].split()
    assert command[0] == "make"
    # `make -n` fails on a target the Makefile does not have.
    dry_run = subprocess.run(
        ["make", "-n", "-C", str(REPO_ROOT), *command[1:]], capture_output=True, text=True
    )
    assert dry_run.returncode == 0, dry_run.stderr
