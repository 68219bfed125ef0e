"""The model registry with the real tools, in a temporary repository whose origin is a
local bare one: `make register` and `make promote` push GTO's tags, each stage tag starts
exactly its own deploy workflow, the workflow's version step finds the version of the
tagged commit, and `dvc artifacts get` fetches by version or stage the file committed
there, from the project's own dvc.yaml and .gto."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from harness import REPO_ROOT
from harness.tools import tool_environment
from tests.test_workflows import deploys_triggered_by_tag

MODEL = "models/segmenter.onnx"
# What the registry reads: the artifact's declaration, the allowed stages, the model.
REGISTRY_FILES = ("dvc.yaml", ".gto", MODEL)


@dataclass(frozen=True)
class Registry:
    work: Path
    origin: Path
    first: str  # the commit of v0.0.1, promoted to prod
    second: str  # the commit of v0.0.2 (a retrained model), promoted to dev
    models: dict[str, bytes]  # commit -> the model file committed there


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """The everyday moves: register the model, retrain and promote that to dev, then
    promote the first version to prod."""
    root = tmp_path_factory.mktemp("registry")
    origin, work = root / "origin.git", root / "work"
    _run(root, "git", "init", "-q", "--bare", str(origin))
    for name in REGISTRY_FILES:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO_ROOT / name, work / name)
    _run(work, "git", "init", "-q", "-b", "main")
    _run(work, "dvc", "init", "-q")
    _run(work, "git", "remote", "add", "origin", str(origin))
    models = {}
    models[first := _commit(work, "the committed model")] = (work / MODEL).read_bytes()
    _make(work, "register")
    (work / MODEL).write_bytes(models[first] + b"retrained")
    models[second := _commit(work, "a retrained model")] = (work / MODEL).read_bytes()
    _make(work, "promote", "STAGE=dev")
    _make(work, "promote", "STAGE=prod", "VERSION=v0.0.1")
    return Registry(work, origin, first, second, models)


def test_register_and_promote_push_gto_tags_to_origin(registry: Registry) -> None:
    tags = _tags(registry.origin)
    stage_tags = {name.rsplit("#", 1)[0]: name for name in tags if "#" in name}
    assert set(stage_tags) == {"segmenter#dev", "segmenter#prod"}
    for name in stage_tags.values():
        assert name.rsplit("#", 1)[1].isdigit(), f"{name} is not segmenter#STAGE#N"
    assert tags == {
        "segmenter@v0.0.1": registry.first,
        "segmenter@v0.0.2": registry.second,  # promoting an unregistered commit registers it
        stage_tags["segmenter#dev"]: registry.second,
        stage_tags["segmenter#prod"]: registry.first,
    }
    shown = _make(registry.work, "registry").stdout
    assert "v0.0.1" in shown and "prod" in shown and "v0.0.2" in shown and "dev" in shown


def test_each_pushed_tag_starts_exactly_its_stages_deploy(registry: Registry) -> None:
    started = {tag: deploys_triggered_by_tag(tag) for tag in _tags(registry.origin)}
    for tag, workflows in started.items():
        if tag.startswith("segmenter@"):
            assert workflows == set(), f"registering {tag} deployed {workflows}"
        else:
            stage = tag.split("#")[1]
            assert workflows == {f"deploy-{stage}.yml"}, tag


def test_promote_refuses_a_missing_or_unknown_stage(registry: Registry) -> None:
    before = _tags(registry.origin)
    missing = _make(registry.work, "promote", check=False)
    assert missing.returncode != 0 and "STAGE is missing" in missing.stderr
    unknown = _make(registry.work, "promote", "STAGE=staging", check=False)
    assert unknown.returncode != 0 and "Allowed stages" in unknown.stdout + unknown.stderr
    assert _tags(registry.origin) == before
    assert _tags(registry.work) == before, "no tag left behind locally either"


def test_deploy_builds_the_version_of_the_stage_tags_commit(
    registry: Registry, tmp_path: Path
) -> None:
    # The workflow's step, run as Actions runs a `run:` script, in a checkout of the tag
    # with every tag (fetch-depth: 0).
    workflow = yaml.safe_load((REPO_ROOT / ".github/workflows/deploy-heroku.yml").read_text())
    steps = workflow["jobs"]["deploy"]["steps"]
    script = next(
        step["run"] for step in steps if step.get("name") == "Find the model's registry version"
    )
    clone = tmp_path / "checkout"
    _run(tmp_path, "git", "clone", "-q", str(registry.origin), str(clone))
    prod_tag = next(tag for tag in _tags(registry.origin) if tag.startswith("segmenter#prod#"))
    _run(clone, "git", "checkout", "-q", f"refs/tags/{prod_tag}")
    github_env = tmp_path / "github_env"
    found = _step(clone, script, github_env)
    assert found.returncode == 0, found.stdout + found.stderr
    assert github_env.read_text().splitlines() == [
        "MODEL_REGISTRY_VERSION=v0.0.1",
        f"REVISION={registry.first}",
    ]
    # A commit that nobody registered: the deploy stops rather than build it unlabelled.
    _run(clone, "git", "commit", "-q", "--allow-empty", "-m", "unregistered")
    unregistered = _step(clone, script, tmp_path / "unused")
    assert unregistered.returncode == 1
    assert (
        "::error::" in unregistered.stdout
        and "no registered segmenter version" in unregistered.stdout
    )


@pytest.mark.parametrize(
    ("selector", "commit"),
    [
        (("--rev", "v0.0.1"), "first"),
        (("--rev", "v0.0.2"), "second"),
        (("--stage", "prod"), "first"),
    ],
)
def test_artifacts_get_fetches_the_committed_model(
    registry: Registry, tmp_path: Path, selector: tuple[str, str], commit: str
) -> None:
    clone = tmp_path / "clone"
    _run(tmp_path, "git", "clone", "-q", str(registry.origin), str(clone))
    out = tmp_path / "fetched.onnx"
    _run(tmp_path, "dvc", "artifacts", "get", str(clone), "segmenter", *selector, "-o", str(out))
    expected = registry.models[getattr(registry, commit)]
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(expected).hexdigest()


def _environment() -> dict[str, str]:
    # No Studio: `dvc artifacts get` asks Studio first when it has a token, and these
    # tests reach nothing beyond this machine.
    return {
        **tool_environment(without=("DVC_STUDIO_TOKEN", "STUDIO_TOKEN")),
        "DVC_STUDIO_OFFLINE": "1",
    }


def _run(cwd: Path, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command, cwd=cwd, env=_environment(), capture_output=True, text=True, timeout=120
    )
    if check:
        assert result.returncode == 0, (
            f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}"
        )
    return result


def _make(work: Path, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The project's Makefile target, with this interpreter's tools and no venv refresh."""
    tools = Path(sys.executable).parent
    return _run(
        work,
        "make",
        "-f",
        str(REPO_ROOT / "Makefile"),
        f"BIN={tools}",
        "INSTALLED=",
        *arguments,
        check=check,
    )


def _step(cwd: Path, script: str, github_env: Path) -> subprocess.CompletedProcess[str]:
    """A `run:` script as Actions runs it on Linux: bash -e with pipefail."""
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=cwd,
        env={**_environment(), "GITHUB_ENV": str(github_env)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _commit(work: Path, message: str) -> str:
    _run(work, "git", "add", "-A")
    _run(work, "git", "commit", "-q", "-m", message)
    _run(work, "git", "push", "-q", "origin", "main")
    return _run(work, "git", "rev-parse", "HEAD").stdout.strip()


def _tags(repo: Path) -> dict[str, str]:
    """Each tag of `repo` and the commit it names."""
    listed = _run(repo, "git", "for-each-ref", "refs/tags", "--format=%(refname:strip=2)").stdout
    return {
        name: _run(repo, "git", "rev-parse", f"refs/tags/{name}^{{commit}}").stdout.strip()
        for name in listed.split()
    }
