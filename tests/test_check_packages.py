"""check_packages records what the pipeline runs on, and nothing installed beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.check_packages import pipeline_packages

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements" / "train.txt"


def test_lists_the_pipeline_and_its_dependencies_but_not_test_tools() -> None:
    names = {line.split("==")[0] for line in pipeline_packages(REQUIREMENTS)}
    assert {"python", "torch", "fastai", "onnxruntime", "fastcore", "numpy"} <= names
    assert not names & {"pytest", "ruff", "moto"}


def test_is_sorted_and_stable() -> None:
    first = pipeline_packages(REQUIREMENTS)
    assert first == pipeline_packages(REQUIREMENTS)
    names = [line.split("==")[0] for line in first[1:]]
    assert names == sorted(names)


def test_a_missing_requirement_says_how_to_install_it(tmp_path: Path) -> None:
    requirements = tmp_path / "train.txt"
    requirements.write_text("no-such-package-for-tile-defects==1.0\n")
    with pytest.raises(SystemExit, match="pip install -r"):
        pipeline_packages(requirements)


def test_setup_installs_the_packages_the_committed_model_was_built_with() -> None:
    """Otherwise `dvc repro` in a fresh clone retrains for a transitive upgrade.

    Packages a platform leaves out (CUDA's on a CPU-only torch) and local version labels
    (torch's "+cpu") are not the install's to decide."""
    recorded = _versions((ROOT / "reports" / "packages.txt").read_text().split("\n")[1:-1])
    installed = _versions(pipeline_packages(REQUIREMENTS)[1:])
    differing = {
        name: installed[name]
        for name in installed
        if recorded.get(name, installed[name]) != installed[name]
    }
    assert not differing, f"installed {differing}; recorded {[recorded[n] for n in differing]}"


def _versions(lines: list[str]) -> dict[str, str]:
    return {name: version.split("+")[0] for name, version in (line.split("==") for line in lines)}
