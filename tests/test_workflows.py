"""The GitHub Actions workflows: actionlint (with shellcheck on every `run:` script) passes,
and each workflow keeps the promises the README makes about when it runs and what it does.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.server import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github/workflows"
# The secrets the README tells a maintainer to create; no workflow may need another.
DOCUMENTED_SECRETS = {
    "HEROKU_API_KEY",
    "HEROKU_APP_DEV",
    "HEROKU_APP_PROD",
    "HEROKU_APP",  # deploy-heroku.yml's own name for whichever app its caller passes
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "REPO_TOKEN",
    "DVC_STUDIO_TOKEN",
}


def _load(name: str) -> dict[str, Any]:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    """Every step of every job, in order."""
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def _runs(workflow: dict[str, Any]) -> str:
    """Every `run:` script of every job, in order."""
    return "\n".join(step.get("run", "") for step in _steps(workflow))


def test_actionlint_passes() -> None:
    tools = Path(sys.executable).parent
    search_path = f"{tools}{os.pathsep}{os.environ['PATH']}"
    actionlint = shutil.which("actionlint", path=search_path)
    if not actionlint:
        pytest.fail("actionlint is not installed; run `make setup` (requirements/dev.txt)")
    if not shutil.which("shellcheck", path=search_path):
        pytest.fail("shellcheck is not installed; run `make setup` (requirements/dev.txt)")
    # shellcheck on PATH: actionlint then checks the shell scripts of `run:` steps too.
    result = subprocess.run(
        [actionlint, "-no-color"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": search_path},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_tests_run_on_every_push_and_pull_request_with_the_ci_command() -> None:
    workflow = _load("test.yml")
    assert "push" in workflow["on"] and "pull_request" in workflow["on"]
    assert workflow["on"]["push"] is None, "every branch, no filter"
    runs = _runs(workflow)
    assert "bash .ci/run" in runs
    cached = [step["with"]["path"] for step in _steps(workflow) if "cache" in step.get("uses", "")]
    assert "~/.cache/tile-defects" in cached, "the locator's download cache is kept across runs"


def test_experiments_train_on_a_cml_gpu_runner_and_report_on_the_pull_request() -> None:
    workflow = _load("experiment.yml")
    assert workflow["on"]["push"]["branches"] == ["exp*"]
    assert "workflow_dispatch" in workflow["on"]
    launch, train = workflow["jobs"]["launch-runner"], workflow["jobs"]["train-and-report"]
    assert "cml runner launch" in _runs({"jobs": {"launch": launch}})
    assert train["needs"] == "launch-runner"
    assert "self-hosted" in train["runs-on"]
    runs = _runs({"jobs": {"train": train}})
    order = [
        "dvc pull",
        "dvc exp run",
        "-S model.arch=resnet34",
        "-S model.pretrained=true",
        "dvc push",
        "python -m scripts.make_report",
        "cml comment create",
    ]
    positions = [runs.find(command) for command in order]
    assert -1 not in positions, dict(zip(order, positions, strict=True))
    assert positions == sorted(positions), "pull, train, push, then report"
    assert "--base" in runs
    assert train["env"]["DVC_STUDIO_TOKEN"] == "${{ secrets.DVC_STUDIO_TOKEN }}", "live metrics"


@pytest.mark.parametrize(
    ("name", "branch", "app_secret"),
    [("deploy-dev.yml", "dev", "HEROKU_APP_DEV"), ("deploy-prod.yml", "main", "HEROKU_APP_PROD")],
)
def test_deploys_follow_their_branch_after_the_tests(
    name: str, branch: str, app_secret: str
) -> None:
    workflow = _load(name)
    trigger = workflow["on"]["workflow_run"]
    assert trigger["workflows"] == ["test"] and trigger["branches"] == [branch]
    job = workflow["jobs"]["deploy"]
    assert "success" in job["if"] and "'push'" in job["if"]
    assert job["uses"] == "./.github/workflows/deploy-heroku.yml"
    assert job["secrets"]["HEROKU_APP"] == f"${{{{ secrets.{app_secret} }}}}"


def test_deploy_builds_smoke_tests_and_releases_the_cpu_image() -> None:
    runs = _runs(_load("deploy-heroku.yml"))
    order = [
        "docker build --pull -f Dockerfile ",
        "docker/smoke_test.py",
        "docker push",
        "/formation",
        "/ready",
    ]
    positions = [runs.find(command) for command in order]
    assert -1 not in positions and positions == sorted(positions), dict(
        zip(order, positions, strict=True)
    )


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.yml")), ids=lambda p: p.name)
def test_secrets_come_only_from_github_secrets(path: Path) -> None:
    text = path.read_text()
    used = set(re.findall(r"secrets\.([A-Za-z0-9_]+)", text))
    assert used <= DOCUMENTED_SECRETS, f"undocumented secrets: {used - DOCUMENTED_SECRETS}"
    # A key pasted into a workflow: AWS key ids, Heroku's UUID-shaped API keys.
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text)
