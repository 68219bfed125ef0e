"""A DVC stage killed half-way leaves nothing that `dvc repro` takes for a finished result.

A tiny DVC project in a temporary git repository has one stage, a Python script that
writes its output a line at a time. It is killed with SIGKILL mid-way (with dvc itself,
as a power cut or the OOM killer would, or alone); then `dvc status` must report the
stage changed, and `dvc repro` must run it again to the end. DVC records a stage in
dvc.lock only after its command succeeded, and the project's training/checkpoint.py
also writes the checkpoint to a .partial file and renames it when complete, so a killed
`train` never leaves a models/checkpoint.pt that looks finished.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from reliability.options import Options
from reliability.report import CheckResult

STAGE_LINES = 30
STAGE_LINE_SECONDS = 0.04
KILL_AFTER_LINES = 5
COMMAND_TIMEOUT_SECONDS = 120

STAGE_SCRIPT = f"""\
import time
from pathlib import Path

with Path("runs.log").open("a") as runs:
    runs.write("started\\n")
with Path("result.txt").open("w") as out:
    for epoch in range({STAGE_LINES}):
        out.write(f"epoch {{epoch}}\\n")
        out.flush()
        time.sleep({STAGE_LINE_SECONDS})
    out.write("done\\n")
"""


def run(options: Options) -> CheckResult:
    result = CheckResult("interrupted_stage")
    started = time.monotonic()
    for scenario in options.budget.dvc_scenarios:
        with tempfile.TemporaryDirectory(prefix=f"dvc-{scenario}-") as scratch:
            try:
                _scenario(scenario, Path(scratch), result, check_final_status=not options.quick)
            except (subprocess.SubprocessError, OSError, RuntimeError) as error:
                result.fail(f"{scenario}: {error}")
    result.figures["key"] = f"{len(options.budget.dvc_scenarios)} killed stages all rerun"
    result.seconds = time.monotonic() - started
    return result


def _scenario(name: str, project: Path, result: CheckResult, check_final_status: bool) -> None:
    """killed_with_dvc: dvc and stage killed on the first run; stage_killed: the stage alone;
    rerun_killed: dvc and stage killed while rerunning after an input changed."""
    _make_project(project)
    if name == "rerun_killed":
        _dvc(project, "repro")
        (project / "input.txt").write_text("second input\n")
    lock_before = _read(project / "dvc.lock")
    lines = _run_and_kill(project, kill_dvc_too=name != "stage_killed")
    result.inputs += 1
    figures: dict[str, object] = {"lines written when killed": lines}
    if _read(project / "dvc.lock") != lock_before:
        result.fail(f"{name}: the killed run changed dvc.lock")
    status = json.loads(_dvc(project, "status", "--json").stdout or "{}")
    figures["dvc status after the kill"] = status.get("train", "up to date")
    if "train" not in status:
        result.fail(f"{name}: `dvc status` calls the killed stage up to date: {status}")
    runs_before = _runs(project)
    _dvc(project, "repro")
    reran = _runs(project) == runs_before + 1
    complete = _read(project / "result.txt").endswith("done\n")
    figures["dvc repro reran it"] = reran
    figures["output complete after repro"] = complete
    if not (reran and complete):
        result.fail(f"{name}: `dvc repro` did not rerun the stage to the end")
    if check_final_status:
        final = json.loads(_dvc(project, "status", "--json").stdout or "{}")
        figures["dvc status after repro"] = final or "up to date"
        if final:
            result.fail(f"{name}: not up to date after repro: {final}")
    result.statuses["rerun" if reran and complete else "not rerun"] += 1
    result.figures[name] = figures


def _make_project(project: Path) -> None:
    """A git repository with what `dvc init` writes (faster than running it) and one stage."""
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    (project / ".dvc").mkdir()
    (project / ".dvc" / "config").write_text("[core]\n    no_scm = false\n")
    (project / ".dvc" / ".gitignore").write_text("/config.local\n/tmp\n/cache\n")
    (project / "stage.py").write_text(STAGE_SCRIPT)
    (project / "input.txt").write_text("first input\n")
    (project / "dvc.yaml").write_text(
        "stages:\n"
        "  train:\n"
        f"    cmd: {sys.executable} stage.py\n"
        "    deps: [stage.py, input.txt]\n"
        "    outs: [result.txt]\n"
    )


def _run_and_kill(project: Path, kill_dvc_too: bool) -> int:
    """Start `dvc repro`, SIGKILL once the stage has written some lines; returns how many."""
    runs_before = _runs(project)
    repro = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro", "-q"],
        cwd=project,
        env=_environment(project),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: one killpg takes dvc and the stage
    )
    deadline = time.monotonic() + COMMAND_TIMEOUT_SECONDS
    try:
        while time.monotonic() < deadline and repro.poll() is None:
            text = _read(project / "result.txt")
            if _runs(project) > runs_before and text.count("epoch") >= KILL_AFTER_LINES:
                break
            time.sleep(0.01)
        else:
            raise RuntimeError("the stage did not start writing its output in time")
        if kill_dvc_too:
            os.killpg(repro.pid, signal.SIGKILL)
        else:
            stage = next(
                child
                for child in psutil.Process(repro.pid).children(recursive=True)
                if "stage.py" in " ".join(child.cmdline())
            )
            stage.kill()
        lines = _read(project / "result.txt").count("\n")
        repro.wait(COMMAND_TIMEOUT_SECONDS)
    finally:
        if repro.poll() is None:
            os.killpg(repro.pid, signal.SIGKILL)
            repro.wait()
    if _read(project / "result.txt").endswith("done\n"):
        raise RuntimeError("the stage finished before it could be killed; make it slower")
    return lines


def _dvc(project: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [sys.executable, "-m", "dvc", *arguments],
        cwd=project,
        env=_environment(project),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"`dvc {' '.join(arguments)}` failed: {completed.stderr.strip()[-500:]}")
    return completed


def _environment(project: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(project / ".site-cache"),  # keep /var/tmp/dvc clean
        "GIT_CONFIG_NOSYSTEM": "1",
    }


def _runs(project: Path) -> int:
    return _read(project / "runs.log").count("started")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
