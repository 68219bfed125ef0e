"""check_packages records what the pipeline runs on, and nothing installed beside it."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pytest
from packaging.version import Version

from harness import REPO_ROOT
from training.check_packages import PACKAGES_FILE, pipeline_packages

REQUIREMENTS = REPO_ROOT / "requirements" / "train.txt"


def test_lists_the_pipeline_and_its_dependencies_but_not_test_tools() -> None:
    names = {line.split("==")[0] for line in pipeline_packages(REQUIREMENTS)}
    assert {"python", "torch", "fastai", "onnxruntime", "fastcore", "numpy"} <= names
    assert not names & {"pytest", "ruff", "moto"}


def test_is_sorted_and_stable() -> None:
    first = pipeline_packages(REQUIREMENTS)
    assert first == pipeline_packages(REQUIREMENTS)
    names = [line.split("==")[0] for line in first[1:]]
    assert names == sorted(names)


def test_lists_only_what_every_platform_installs() -> None:
    """So that a laptop (macOS, or Linux with a CPU-only torch) does not retrain what a
    Linux GPU box built: CUDA's libraries come with torch on Linux only, uvloop off Windows."""
    names = {line.split("==")[0] for line in pipeline_packages(REQUIREMENTS)}
    assert {"sympy", "networkx", "filelock"} <= names  # torch's own, on every platform
    assert not names & {"cuda-toolkit", "nvidia-cudnn-cu13", "nvidia-cublas", "triton", "uvloop"}


def test_a_build_label_is_not_a_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch 2.14.1+cpu is the release the committed model was built with."""
    real = metadata.distribution

    def labelled(name: str) -> metadata.Distribution:
        distribution = real(name)
        if name != "torch":
            return distribution
        return SimpleNamespace(version="2.14.1+cpu", requires=distribution.requires)

    monkeypatch.setattr(metadata, "distribution", labelled)
    assert "torch==2.14.1" in pipeline_packages(REQUIREMENTS)


def test_a_missing_requirement_says_how_to_install_it(tmp_path: Path) -> None:
    requirements = tmp_path / "train.txt"
    requirements.write_text("no-such-package-for-tile-defects==1.0\n")
    with pytest.raises(SystemExit, match="pip install -r"):
        pipeline_packages(requirements)


def test_setup_installs_the_packages_the_committed_model_was_built_with() -> None:
    """Otherwise `dvc repro` in a fresh clone retrains for a transitive upgrade.

    Packages a platform leaves out (CUDA's on a CPU-only torch) and local version labels
    (torch's "+cpu") are not the install's to decide."""
    recorded = _versions((REPO_ROOT / PACKAGES_FILE).read_text().splitlines()[1:])
    installed = _versions(pipeline_packages(REQUIREMENTS)[1:])
    differing = {
        name: f"{version} installed, {recorded[name]} recorded"
        for name, version in installed.items()
        if name in recorded and recorded[name] != version
    }
    assert not differing, differing


def _versions(lines: list[str]) -> dict[str, str]:
    """`name==version` lines as public versions by name (`+cpu` and the like dropped)."""
    return {name: Version(version).public for name, version in (line.split("==") for line in lines)}
