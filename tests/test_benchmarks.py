"""`python -m benchmarks.run --quick` end to end: every section is there and makes sense.

One quick run (real servers, real photos) is shared by the tests below. It uses the
committed models/segmenter.onnx, with models/checkpoint.pt when the pipeline has produced
it, else torch weights the benchmark rebuilds from the ONNX file in tmp. No timing
threshold is asserted: timings depend on the machine; only their consistency is. The quick
run skips the original service; its Learner, app and exported network are checked here in-process.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import REPO_ROOT
from harness.dataset import tile_dataset
from harness.server import service_environment
from service.contract import file_sha256

pytestmark = pytest.mark.slow  # starts servers, takes about a minute

LEVELS = ("1", "4", "16")
MEASURED_SETUPS = ("service", "fastapi", "pytorch")
SKIPPED_SETUPS = ("bentoml", "original", "service-resnet34")
TILES = ("small", "typical", "large")
STAGES = ("decode", "preprocess", "inference", "postprocess", "encode")


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("bench")
    command = ["benchmarks.run", "--quick", "--out", str(out), "--cache-dir", str(out / "cache")]
    done = subprocess.run(
        [sys.executable, "-m", *command],
        cwd=REPO_ROOT,
        env=service_environment(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((out / "latest.json").read_text()), out


def assert_percentiles(summary: dict[str, Any], keys: tuple[str, ...]) -> None:
    values = [summary[key] for key in keys]
    assert summary["n"] >= 1
    assert all(math.isfinite(v) and v > 0 for v in values), summary
    assert values == sorted(values), f"percentiles out of order: {summary}"


def test_writes_json_markdown_and_picture(bench: tuple[dict[str, Any], Path]) -> None:
    results, out = bench
    assert set(results) >= {
        "meta",
        "inprocess",
        "http",
        "cold_start",
        "memory",
        "int8",
        "sweep",
        "footprint",
        "goals",
    }
    assert results["meta"]["quick"] is True
    markdown = (out / "latest.md").read_text()
    assert "| service (onnxruntime) | 16 |" in markdown
    assert "## Goals" in markdown
    assert (out / "latest.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_model_and_tiles_are_real_and_shared(bench: tuple[dict[str, Any], Path]) -> None:
    meta = bench[0]["meta"]
    # A fresh clone benchmarks the committed model, not a throwaway one.
    assert meta["model"]["source"] in ("pipeline", "pipeline-onnx")
    assert meta["model"]["onnx_sha256"] == file_sha256(REPO_ROOT / "models" / "segmenter.onnx")
    # Every setup runs the same weights.
    assert meta["model"]["max_abs_diff_onnx_vs_torch"] < 1e-3
    pixels = [meta["tiles"][name]["pixels"] for name in TILES]
    assert pixels == sorted(pixels) and pixels[0] < pixels[2]
    assert all((tile_dataset() / meta["tiles"][name]["path"]).is_file() for name in TILES)
    assert "CPUExecutionProvider" in meta["providers"]["available"]


def test_results_name_no_machine_paths(bench: tuple[dict[str, Any], Path]) -> None:
    text = (bench[1] / "latest.json").read_text()
    assert str(REPO_ROOT) not in text and str(bench[1]) not in text
    assert str(tile_dataset()) not in text


def test_inprocess_stages(bench: tuple[dict[str, Any], Path]) -> None:
    inprocess = bench[0]["inprocess"]
    # The served file, the other of float and INT8, and torch.
    for runner in {"onnxruntime", *bench[0]["int8"]["timings"].values(), "pytorch"}:
        for tile in TILES:
            timed = inprocess[runner][tile]
            assert timed["repetitions"] >= 1
            for stage in STAGES:
                assert_percentiles(timed["stages"][stage], ("p50_ms", "p95_ms", "max_ms"))
            assert_percentiles(timed["total"], ("p50_ms", "p95_ms", "max_ms"))
            assert timed["total"]["mean_ms"] >= timed["stages"]["inference"]["mean_ms"]
    assert "skipped" in inprocess["original"]  # --quick skips the original service


def test_http_levels_have_no_errors(bench: tuple[dict[str, Any], Path]) -> None:
    http = bench[0]["http"]
    for setup in MEASURED_SETUPS:
        for level in LEVELS:
            result = http[setup]["levels"][level]
            assert result["concurrency"] == int(level)
            assert result["errors"] == 0, result["error_kinds"]
            assert result["ok"] == result["requests"] >= 1
            assert result["throughput_rps"] > 0
            assert_percentiles(result["latency"], ("p50_ms", "p95_ms", "p99_ms", "max_ms"))
            # The server's own time for a request fits inside the client's.
            if setup == "service":  # the service reports its own time (Server-Timing)
                server = result["server_timing"]
                assert server["inference"]["p50_ms"] <= server["total"]["p50_ms"]
                assert server["total"]["p50_ms"] <= result["latency"]["p50_ms"] + 1.0
            assert result["client_delay"]["p50_ms"] >= 0
    assert all("skipped" in http[setup] for setup in SKIPPED_SETUPS)


def test_cold_start_memory_and_footprint(bench: tuple[dict[str, Any], Path]) -> None:
    results = bench[0]
    for setup in MEASURED_SETUPS:
        cold = results["cold_start"][setup]
        assert len(cold["runs_s"]) >= 1
        assert 0 < cold["median_s"] <= cold["max_s"] < 120
        memory = results["memory"][setup]
        assert 10 < memory["idle_rss_mb"] <= memory["peak_rss_mb"] < 20_000
        assert 0 < memory["sampled_peak_under_load_mb"] <= memory["peak_rss_mb"] + 1
    footprint = results["footprint"]
    assert 10 < footprint["serving"]["mb"] < footprint["original"]["mb"]
    assert footprint["original"]["mb"] <= footprint["training"]["mb"]


def test_int8_copy_and_settings_sweep(bench: tuple[dict[str, Any], Path]) -> None:
    int8, sweep = bench[0]["int8"], bench[0]["sweep"]
    assert int8["version"].endswith("-int8") and 0 < int8["mb"] < int8["float_mb"]
    assert int8["typical_tile"]["mask_agreement"] > 0.95
    assert set(int8["inference_speedup"]) == set(TILES)
    assert all(speedup > 0 for speedup in int8["inference_speedup"].values())
    assert "avx512_vnni" in int8["cpu"]
    assert sweep["configs"], "the quick sweep runs one configuration"
    for config in sweep["configs"]:
        for level in config["levels"].values():
            assert level["errors"] == 0 and level["ok"] >= 1, level


def test_goals_are_reported(bench: tuple[dict[str, Any], Path]) -> None:
    goals = {goal["goal"]: goal for goal in bench[0]["goals"]}
    assert len(goals) == 13
    assert all(goal["passed"] in (True, False, None) for goal in goals.values())
    unmeasured = {
        "Faster than the original service",
        "Starts faster than the original service",
        "Less memory than the original service",
        "INT8 worth serving (the default when it passes)",  # --quick scores no test split
    }
    assert {name for name, goal in goals.items() if goal["passed"] is None} == unmeasured
    assert "BentoML not measured" in goals["No slower than BentoML or plain FastAPI"]["measured"]


def test_original_service_and_its_network_exported(tmp_path: Path) -> None:
    """The original's Learner answers as its app did, and the project's export gives the
    same network's probabilities from its weights."""
    from fastapi.testclient import TestClient

    from benchmarks import blog_learner
    from benchmarks.blog_server import create_app
    from benchmarks.tiles import pick_tiles

    photo = pick_tiles()["typical"].data
    pkl = blog_learner.export_learner(tmp_path)
    with TestClient(create_app(pkl)) as client:
        answer = client.post("/segment", files={"image": ("tile.jpg", photo, "image/jpeg")})
    assert answer.status_code == 200
    mask = answer.json()["pred"]
    assert len(mask) == len(mask[0]) == blog_learner.ORIGINAL_SIZE
    assert {value for row in mask for value in row} <= {0, 1}
    learn = blog_learner.load(pkl)
    onnx = blog_learner.write_served_onnx(learn, tmp_path / "resnet34.onnx", min_area=32)
    assert blog_learner.crop_parity(learn, onnx, photo) < 1e-3
