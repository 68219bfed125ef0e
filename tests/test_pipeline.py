"""The real `dvc repro` on a small real subset, in a temporary git repository.

One module-scoped repository is built and reproduced once; the tests then read its
outputs and drive DVC the way a user would, in file order.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from harness import REPO_ROOT
from harness.tools import tool_environment
from service.segmenter import Segmenter
from training.dataset_source import DATA_DIR_VARIABLE, fingerprint

PROJECT_FILES = (
    "dvc.yaml",
    "params.yaml",
    "pyproject.toml",
    "requirements",
    "training",
    "export",
    "service",
)
IMAGES_PER_CLASS = 6
SMALL_RUN = {
    "model": {"width": 4, "depth": 3},
    "train": {"epochs": 1, "samples_per_epoch": 32, "batch_size": 8, "crop_size": 64},
    "evaluate": {"overlays": 4},
    "export": {"parity_images": 3},
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, shared_data_dir: Path) -> Path:
    """A git + DVC repository holding the project, reproduced once on a small subset."""
    root = tmp_path_factory.mktemp("pipeline")
    repo, dataset = root / "repo", root / "dataset"
    for name in PROJECT_FILES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            repo.mkdir(exist_ok=True)
            shutil.copy2(source, repo / name)
    _copy_subset(shared_data_dir, dataset)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"]["source"] = str(dataset)
    params["data"]["fingerprint"] = fingerprint(dataset)
    for section, values in SMALL_RUN.items():
        params[section].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(repo, "git", "init", "-q")
    _run(repo, "dvc", "init", "-q")
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "project")
    _run(repo, "dvc", "repro")
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "reproduced")
    return repo


def test_every_stage_writes_its_outputs(project: Path) -> None:
    manifest = (project / "data/manifest.csv").read_text().splitlines()
    assert len(manifest) == 1 + 6 * IMAGES_PER_CLASS
    split = json.loads((project / "data/split.json").read_text())
    assert sorted(split["train"] + split["valid"] + split["test"]) == sorted(
        line.split(",")[0] for line in manifest[1:]
    )
    assert (project / "models/checkpoint.pt").is_file()
    calibration = json.loads((project / "reports/calibrate.json").read_text())
    assert 0.0 < calibration["threshold"] < 1.0
    assert 0.0 <= calibration["decision_threshold"] <= 1.0
    assert calibration["min_area"] == 8 and calibration["border"] == 4
    assert calibration["test_time_flip"] is True
    assert len(list((project / "reports/evaluate/overlays").glob("*.jpg"))) == 4
    assert (project / "reports/evaluate/errors.jpg").stat().st_size > 0
    assert (project / "dvclive/metrics.json").is_file()


def test_evaluate_reports_every_metric(project: Path) -> None:
    metrics = json.loads((project / "reports/evaluate/metrics.json").read_text())
    for key in ("dice_defect", "iou_defect", "dice_all", "iou_all", "pixel_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0
    assert set(metrics["per_class_dice"]) == {"Blowhole", "Break", "Crack", "Fray", "Uneven"}
    detection = metrics["detection"]
    assert set(detection) == {
        "precision",
        "recall",
        "f1",
        "auroc",
        "free_flagged_rate",
        "recall_ci95",
        "free_flagged_ci95",
    }
    for share, interval in (("recall", "recall_ci95"), ("free_flagged_rate", "free_flagged_ci95")):
        assert 0.0 <= detection[interval]["low"] <= detection[share] <= 1.0
        assert detection[share] <= detection[interval]["high"] <= 1.0
    # The ROC's best recall at calibrate's false-alarm rate is at least the served one's
    # whenever the served threshold keeps to that rate on the test tiles too.
    assert metrics["roc"]["max_free_flagged"] == 0.05 and 0.0 <= metrics["roc"]["recall"] <= 1.0
    if metrics["detection"]["free_flagged_rate"] <= 0.05:
        assert metrics["roc"]["recall"] >= metrics["detection"]["recall"]
    classes = metrics["classes"]
    names = ["background", "blowhole", "break", "crack", "fray", "uneven"]
    assert list(classes["iou"]) == list(classes["dice"]) == names
    assert 0.0 <= classes["miou"] <= 1.0
    assert 0.0 <= classes["tile_accuracy_defect"] <= 1.0
    plots = project / "reports/evaluate/plots"
    tiles = json.loads((plots / "tile_classes.json").read_text())
    assert len(tiles) == metrics["images"]["defect"] + metrics["images"]["free"]
    assert {t["actual"] for t in tiles} <= {"Blowhole", "Break", "Crack", "Fray", "Free", "Uneven"}
    assert [row["class"] for row in json.loads((plots / "per_class_iou.json").read_text())] == names


def test_export_validates_the_onnx_file_and_embeds_metadata(project: Path) -> None:
    report = json.loads((project / "reports/export.json").read_text())
    assert report["parity"]["images"] == 3
    assert report["parity"]["max_abs_diff"] <= 1e-4
    assert report["parity"]["mask_agreement"] >= 0.999
    assert report["dice_gap"] <= 0.005
    segmenter = Segmenter.from_onnx(project / "models/segmenter.onnx")
    # No trace of the exporting machine: torch records each node's stack trace, paths and all.
    assert str(project) not in (project / "models/segmenter.onnx").read_bytes().decode("latin-1")
    evaluated = json.loads((project / "reports/evaluate/metrics.json").read_text())
    assert segmenter.card is not None and segmenter.card.test_metrics == evaluated
    assert segmenter.card.training_params["train"]["epochs"] == 1
    assert segmenter.policy.stride == 2 * 2**3  # model.downsample times 2 ** model.depth
    calibration = json.loads((project / "reports/calibrate.json").read_text())
    assert segmenter.threshold == calibration["threshold"]
    assert segmenter.decision_threshold == calibration["decision_threshold"]
    assert segmenter.border == calibration["border"]
    assert segmenter.classes == ("background", "blowhole", "break", "crack", "fray", "uneven")
    assert segmenter.policy.test_time_flip is calibration["test_time_flip"]


def test_onnx_file_is_git_tracked_and_locked(project: Path) -> None:
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    outs = {out["path"]: out for out in lock["stages"]["export"]["outs"]}
    assert "md5" in outs["models/segmenter.onnx"] and "md5" in outs["models/segmenter-float.onnx"]
    tracked = _run(project, "git", "ls-files", "models").stdout.split()
    assert {"models/segmenter.onnx", "models/segmenter-float.onnx"} <= set(tracked)
    assert "models/checkpoint.pt" not in tracked


def test_second_repro_has_nothing_to_do(project: Path) -> None:
    assert _stages_run(_run(project, "dvc", "repro").stdout) == ["check_packages"]


def test_changed_evaluation_code_reruns_only_evaluate(project: Path) -> None:
    evaluate = project / "training/evaluate.py"
    evaluate.write_text(evaluate.read_text() + "\n# a change to evaluation code\n")
    ran = _stages_run(_run(project, "dvc", "repro").stdout)
    # export reads evaluate's metrics, not its code: the same metrics leave the model as it is.
    assert ran == ["check_packages", "evaluate"]


def test_changed_inference_code_or_setting_does_not_retrain(project: Path) -> None:
    _run(project, "git", "commit", "-qam", "evaluation change")
    segmenter = project / "service/segmenter.py"
    segmenter.write_text(segmenter.read_text() + "\n# a change to inference code\n")
    ran = _stages_run(_run(project, "dvc", "repro").stdout)
    assert ran == ["check_packages", "calibrate", "evaluate", "export"]
    output = _run(project, "dvc", "exp", "run", "-S", "calibrate.test_time_flip=false").stdout
    assert _stages_run(output) == ["check_packages", "calibrate", "evaluate", "export"]
    served = Segmenter.from_onnx(project / "models/segmenter.onnx")
    assert served.policy.test_time_flip is False
    _run(project, "git", "checkout", "--", "params.yaml")


def test_experiment_with_a_training_param_reruns_from_train(project: Path) -> None:
    _run(project, "git", "commit", "-qam", "inference change")
    output = _run(project, "dvc", "exp", "run", "-S", "train.lr=0.002").stdout
    assert _stages_run(output) == ["check_packages", "train", "calibrate", "evaluate", "export"]
    experiments = json.loads(_run(project, "dvc", "exp", "show", "--json").stdout)
    assert experiments, "dvc exp show lists the workspace and the experiment"
    metrics = json.loads(_run(project, "dvc", "metrics", "show", "--json").stdout)
    assert "reports/evaluate/metrics.json" in json.dumps(metrics)


def test_plots_render_learning_curves(project: Path) -> None:
    _run(project, "dvc", "plots", "show", "-o", "plots_html")
    page = (project / "plots_html/index.html").read_text()
    assert "Learning curves (loss)" in page
    assert "Validation Dice per epoch" in page


def test_failed_export_check_fails_the_stage_and_keeps_no_model(project: Path) -> None:
    params_file = project / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["export"]["min_mask_agreement"] = 1.01
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    result = _run(project, "dvc", "repro", check=False)
    assert result.returncode != 0
    assert "export check failed" in result.stdout + result.stderr
    assert not (project / "models/segmenter.onnx").exists()


def _stages_run(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def _run(cwd: Path, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    # The subset in params.yaml's data.source, not the full dataset that CI names.
    environment = tool_environment(without=(DATA_DIR_VARIABLE,))
    result = subprocess.run(
        command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=900
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def _copy_subset(source: Path, dest: Path) -> None:
    for class_dir in sorted(source.glob("MT_*")):
        images = sorted((class_dir / "Imgs").glob("*.jpg"))[:IMAGES_PER_CLASS]
        target = dest / class_dir.name / "Imgs"
        target.mkdir(parents=True)
        for image in images:
            shutil.copy2(image, target)
            shutil.copy2(image.with_suffix(".png"), target)
