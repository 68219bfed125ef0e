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

from harness import REPO_ROOT

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
    caches = [step for step in _steps(workflow) if "cache" in step.get("uses", "")]
    assert "~/.cache/tile-defects" in [step["with"]["path"] for step in caches], (
        "the locator's download cache is kept across runs"
    )
    assert workflow["on"]["workflow_call"]["inputs"]["ref"]["required"], "a deploy's tag"
    assert _steps(workflow)[0]["with"]["ref"] == "${{ inputs.ref }}"


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


# Stage -> (workflow, app secret): GTO's stage tags are the only automatic deploys.
DEPLOYS = {
    "dev": ("deploy-dev.yml", "HEROKU_APP_DEV"),
    "prod": ("deploy-prod.yml", "HEROKU_APP_PROD"),
}


def github_filter(pattern: str) -> re.Pattern[str]:
    """A branch or tag filter pattern as a regular expression over the whole name, after
    GitHub's documented filter pattern syntax: `*` any characters but `/`, `**` any
    characters, `?` and `+` zero or one and one or more of the preceding character,
    `[...]` one character of the set; every other character stands for itself."""
    assert not pattern.startswith("!"), "a negated pattern excludes; it matches nothing alone"
    regex, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif pattern[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif pattern[i] in "?+":
            regex, i = regex + pattern[i], i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            regex, i = regex + pattern[i : end + 1], end + 1
        else:
            regex, i = regex + re.escape(pattern[i]), i + 1
    return re.compile(regex)


def deploys_triggered_by_tag(tag: str) -> set[str]:
    """The deploy workflows that a push of `tag` starts."""
    triggered = set()
    for name in (workflow for workflow, _ in DEPLOYS.values()):
        patterns = _load(name)["on"]["push"]["tags"]
        if any(github_filter(pattern).fullmatch(tag) for pattern in patterns):
            triggered.add(name)
    return triggered


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        # The examples of GitHub's "Patterns to match branches and tags" table.
        ("feature/*", "feature/my-branch", True),
        ("feature/*", "feature/your-branch/x", False),
        ("feature/**", "feature/mona/the/octocat", True),
        ("*feature", "ver-10-feature", True),
        ("v2*", "v2.9", True),
        ("v[12].[0-9]+.[0-9]+", "v1.10.1", True),
        ("v[12].[0-9]+.[0-9]+", "v3.0.0", False),
        ("v[12].[0-9]+.[0-9]+", "v1x0.0", False),
    ],
)
def test_github_filter_follows_the_documented_examples(
    pattern: str, name: str, matches: bool
) -> None:
    assert bool(github_filter(pattern).fullmatch(name)) is matches


@pytest.mark.parametrize(
    ("tag", "triggered"),
    [
        ("segmenter#prod#3", {"deploy-prod.yml"}),
        ("segmenter#prod#12", {"deploy-prod.yml"}),
        ("segmenter#dev#3", {"deploy-dev.yml"}),
        # A version, another artifact, GTO's unassignment, deregistration and deprecation
        # tags, and look-alike stages deploy nothing.
        ("segmenter@v1.0.0", set()),
        ("other#prod#1", set()),
        ("segmenter#prod!#4", set()),
        ("segmenter@v1.0.0!", set()),
        ("segmenter@deprecated", set()),
        ("segmenter#production#1", set()),
        ("xsegmenter#prod#1", set()),
        ("models=segmenter#prod#1", set()),  # GTO names an artifact of models/dvc.yaml so
    ],
)
def test_only_stage_tags_start_their_deploy(tag: str, triggered: set[str]) -> None:
    assert deploys_triggered_by_tag(tag) == triggered


@pytest.mark.parametrize("stage", sorted(DEPLOYS))
def test_deploys_release_the_commit_of_their_stage_tag(stage: str) -> None:
    name, app_secret = DEPLOYS[stage]
    workflow = _load(name)
    # With only `tags` under `push`, no branch push (no merge) starts it.
    assert set(workflow["on"]) == {"push", "workflow_dispatch"}
    assert workflow["on"]["push"] == {"tags": [f"segmenter#{stage}#*"]}
    test, job = workflow["jobs"]["test"], workflow["jobs"]["deploy"]
    # By hand too, only from a stage tag: the same names as the push filter.
    assert test["if"] == f"startsWith(github.ref, 'refs/tags/segmenter#{stage}#')"
    # The tag's commit passes the tests of record before it is released, restoring no
    # cache: GitHub skips the callee's cache steps under the caller's cache-mode.
    assert test["uses"] == "./.github/workflows/test.yml"
    assert test["with"] == {"ref": "${{ github.ref }}"}
    assert workflow["cache-mode"] == "none"
    assert job["needs"] == "test"
    assert job["uses"] == "./.github/workflows/deploy-heroku.yml"
    assert job["with"]["ref"] == "${{ github.ref }}", "the tag, so its commit is built"
    assert job["secrets"]["HEROKU_APP"] == f"${{{{ secrets.{app_secret} }}}}"


def test_deploy_builds_smoke_tests_and_releases_the_cpu_image() -> None:
    workflow = _load("deploy-heroku.yml")
    checkout = _steps(workflow)[0]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"] == {"ref": "${{ inputs.ref }}", "fetch-depth": 0}, "with the tags"
    runs = _runs(workflow)
    order = [
        "git tag --points-at HEAD",
        "docker build --pull -f Dockerfile ",
        '--build-arg "MODEL_REGISTRY_VERSION=$MODEL_REGISTRY_VERSION"',
        "docker/smoke_test.py",
        "/info",
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
