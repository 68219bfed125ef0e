"""scripts/make_report.py on a small fabricated experiment in a temporary git + DVC repo:
a base commit, then a workspace with new metrics, params, curves and overlay pictures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from harness import REPO_ROOT
from scripts.make_report import CURVES_FILE, build_report, parse_tsv, plot_curves, read_curves

DVC_YAML = """\
metrics:
  - dvclive/metrics.json
  - reports/evaluate/metrics.json
  - reports/export.json
params:
  - params.yaml
"""


def _run(cwd: Path, *command: str) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def _write_experiment(repo: Path, epochs: int, dice: float, lr: float) -> None:
    """DVCLive-style curves and metrics, the evaluate stage's metrics and params.yaml."""
    curves = repo / "dvclive/plots/metrics"
    for name, start in (("train/loss", 1.5), ("eval/loss", 1.6)):
        path = curves / f"{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [
            f"{1_700_000_000 + step}\t{step}\t{start / (step + 1):.4f}" for step in range(epochs)
        ]
        path.write_text("timestamp\tstep\tloss\n" + "\n".join(rows) + "\n")
    dice_rows = [f"{step}\t{dice * (step + 1) / epochs:.4f}" for step in range(epochs)]
    (curves / "dice.tsv").write_text("step\tdice\n" + "\n".join(dice_rows) + "\n")
    metrics = {"dice": dice, "step": epochs - 1, "train": {"loss": 1.5 / epochs}}
    (repo / "dvclive/metrics.json").write_text(json.dumps(metrics))
    evaluate = repo / "reports/evaluate"
    evaluate.mkdir(parents=True, exist_ok=True)
    evaluated = {
        "dice_defect": dice * 0.9,
        "per_class_dice": {"Crack": dice * 0.5},
        "detection": {"recall": dice + 0.3, "free_flagged_rate": 0.04, "auroc": 0.95},
    }
    (evaluate / "metrics.json").write_text(json.dumps(evaluated))
    (repo / "params.yaml").write_text(
        f"model:\n  arch: compact_unet\ntrain:\n  epochs: {epochs}\n  lr: {lr}\n"
    )


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A repo whose commit tagged `base` had 3 epochs, and whose workspace has 5."""
    with pytest.MonkeyPatch.context() as patch:
        # For these tests' git and dvc, and for the dvc that the report runs.
        patch.setenv("DVC_NO_ANALYTICS", "1")
        for name in ("GIT_AUTHOR", "GIT_COMMITTER"):
            patch.setenv(f"{name}_NAME", "test")
            patch.setenv(f"{name}_EMAIL", "test@localhost")
        yield _make_experiment(tmp_path_factory.mktemp("experiment"))


def _make_experiment(repo: Path) -> Path:
    _run(repo, "git", "init", "-q")
    _run(repo, sys.executable, "-m", "dvc", "init", "-q")
    (repo / "dvc.yaml").write_text(DVC_YAML)
    _write_experiment(repo, epochs=3, dice=0.40, lr=0.003)
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "base")
    _run(repo, "git", "tag", "base")
    _write_experiment(repo, epochs=5, dice=0.55, lr=0.001)
    overlays = repo / "reports/evaluate/overlays"
    overlays.mkdir(parents=True)
    for index in range(3):
        picture = np.full((48, 64, 3), 60 * index, np.uint8)
        cv2.imwrite(str(overlays / f"MT_Crack_{index}.jpg"), picture)
    cv2.imwrite(str(repo / "reports/evaluate/errors.jpg"), np.zeros((48, 64, 3), np.uint8))
    return repo


def test_report_diffs_metrics_and_params_against_the_base(experiment: Path, tmp_path: Path) -> None:
    out = tmp_path / "cml"
    report = build_report(experiment, out, base="base").read_text()

    metrics = report.split("## Metrics")[1].split("## Params")[0]
    assert "| dvclive/metrics.json" in metrics
    dice_row = next(line for line in metrics.splitlines() if "| dice " in line)
    assert "0.4" in dice_row and "0.55" in dice_row and "0.15" in dice_row, dice_row
    assert "dice_defect" in metrics  # the evaluate stage's file too
    params = report.split("## Params")[1].split("## Learning curves")[0]
    epochs_row = next(line for line in params.splitlines() if "train.epochs" in line)
    assert "3" in epochs_row and "5" in epochs_row
    assert "train.lr" in params
    assert "model.arch" not in params, "unchanged params are left out"

    assert f"![Learning curves (dashed: `base`)](./{CURVES_FILE})" in report
    curves = cv2.imread(str(out / CURVES_FILE))
    assert curves is not None and curves.shape[1] > curves.shape[0] > 200
    assert "](./errors.jpg)" in report and (out / "errors.jpg").is_file()
    for index in range(3):
        assert f"](./overlays/MT_Crack_{index}.jpg)" in report
        assert (out / f"overlays/MT_Crack_{index}.jpg").is_file()
    assert (out / ".gitignore").read_text() == "*\n", "the generated folder stays out of git"


def test_report_opens_with_the_headline_and_folds_every_metric(
    experiment: Path, tmp_path: Path
) -> None:
    report = build_report(experiment, tmp_path / "cml", base="base").read_text()
    headline = report.split("## Headline")[1].split("<details>")[0]
    assert report.index("## Headline") < report.index("<details>") < report.index("## Metrics")
    assert "| Dice, defect tiles (pooled) | 0.495 | 0.36 | +0.135 |" in headline
    assert "| Dice, Crack | 0.275 | 0.2 | +0.075 |" in headline
    assert "| recall at the decision threshold | 0.85 | 0.7 | +0.15 |" in headline
    assert "| defect-free tiles flagged | 0.04 | 0.04 | +0 |" in headline
    assert "| in-process time per test tile, ms | - | - | - |" in headline  # no export yet
    assert report.index("</details>") < report.index("## Learning curves")


def test_report_without_a_base_shows_the_metrics(experiment: Path, tmp_path: Path) -> None:
    report = build_report(experiment, tmp_path / "cml").read_text()
    assert "## Params" not in report
    metrics = report.split("## Metrics")[1].split("## Learning curves")[0]
    assert "| dvclive/metrics.json | dice | 0.55 |" in metrics
    assert "| dvclive/metrics.json | train.loss | 0.3 |" in metrics
    assert "| reports/evaluate/metrics.json | dice_defect | 0.495 |" in metrics
    assert "| reports/export.json | - | missing |" in metrics  # declared, not written yet
    assert f"![Learning curves](./{CURVES_FILE})" in report


def test_an_unknown_base_is_reported_not_raised(experiment: Path, tmp_path: Path) -> None:
    report = build_report(experiment, tmp_path / "cml", base="no-such-branch").read_text()
    assert "`dvc metrics diff no-such-branch --precision 4` failed" in report
    assert "## Learning curves" in report


def test_command_line_writes_the_report(experiment: Path, tmp_path: Path) -> None:
    out = tmp_path / "from_cli"
    command = [sys.executable, "-m", "scripts.make_report", "--repo", str(experiment)]
    printed = _run(REPO_ROOT, *command, "--out", str(out), "--base", "base")
    assert printed.strip() == f"wrote {out / 'report.md'}"
    assert (out / "report.md").is_file() and (out / CURVES_FILE).is_file()


def test_tsv_parsing_handles_dvclive_columns() -> None:
    with_timestamp = parse_tsv("train/loss", "timestamp\tstep\tloss\n1\t0\t0.9\n2\t1\t0.5\n")
    assert with_timestamp is not None
    assert (with_timestamp.steps, with_timestamp.values) == ([0.0, 1.0], [0.9, 0.5])
    assert with_timestamp.metric == "loss"
    assert parse_tsv("dice", "step\tdice\n") is None


def test_the_projects_own_curves_render(tmp_path: Path) -> None:
    curves = read_curves(REPO_ROOT)
    if not curves:
        pytest.skip("no dvclive/plots in this checkout yet")
    picture = cv2.imread(str(plot_curves(curves, tmp_path / "curves.png")))
    assert picture is not None and picture.shape[0] > 200
