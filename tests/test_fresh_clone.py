"""A fresh clone is in step with dvc.lock: `dvc repro` there redoes no stage for a changed
dependency or parameter, only what has not been pulled (and check_packages, always)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import yaml

from harness import REPO_ROOT
from harness.tools import tool_environment


def test_fresh_clone_names_no_changed_dependency_or_parameter(tmp_path: Path) -> None:
    clone = _fresh_clone(tmp_path / "clone")
    status = json.loads(_run(clone, "dvc", "status", "--json").stdout)
    outputs = _stage_outputs(clone)
    problems = []
    for stage, changes in status.items():
        for change in changes:
            if change == "always changed":
                assert stage == "check_packages", f"{stage} should not always run"
                continue
            for path, state in change.get("changed deps", {}).items():
                # An upstream output that is not pulled yet is expected; anything else is not.
                if not (state == "deleted" and path in outputs):
                    problems.append(f"{stage}: dependency {path} {state}")
            for path, state in change.get("changed outs", {}).items():
                if state not in ("deleted", "not in cache"):
                    problems.append(f"{stage}: output {path} {state}")
            extra = set(change) - {"changed deps", "changed outs"}
            problems += [f"{stage}: {key} {change[key]}" for key in extra]
    assert not problems, "\n".join(problems)


def _fresh_clone(dest: Path) -> Path:
    """The tracked files of this working tree, as a clone of it would have them."""
    listed = _run(REPO_ROOT, "git", "ls-files", "-z").stdout.split("\0")
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    _run(dest, "git", "init", "-q")
    _run(dest, "git", "add", "-A")
    _run(dest, "git", "commit", "-qm", "clone")
    return dest


def _stage_outputs(repo: Path) -> set[str]:
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    outputs = set()
    for stage in stages.values():
        for key in ("outs", "metrics", "plots"):
            for entry in stage.get(key, []):
                outputs.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    return outputs


def _run(cwd: Path, *command: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command, cwd=cwd, env=tool_environment(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}"
    return result
