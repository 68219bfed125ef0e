"""`python -m benchmarks.run`: measure the service against what a user would pick instead.

Setups, all on the same machine, client and real photos:
- service: `python -m service` (onnxruntime), the thing users deploy;
- fastapi, bentoml: the same ONNX file, pre- and post-processing behind a plain FastAPI
  app (benchmarks/fastapi_app.py) and behind BentoML (benchmarks/bento_service.py);
- pytorch: the same network in torch eager mode, in-process and behind the service's
  own HTTP app (benchmarks/torch_server.py);
- original: the published service's way, a fastai resnet34 U-Net Learner, `load_learner`
  + 128 px centre crop + `learn.predict` + a nested-list JSON mask behind FastAPI
  (benchmarks/blog_learner.py, blog_server.py);
- service-resnet34: that Learner's very network and weights, exported by the project's
  export code, served by the service: the same network both ways;
- int8: the served model quantized (export/quantize.py), in-process against float;
- the service's concurrency settings under load (benchmarks/sweep.py).
`--quick` skips the original, service-resnet34 and BentoML setups and builds no venvs.

Writes benchmarks/results/latest.json, latest.md and latest.png (or into --out) and
prints one pass/fail line per goal (benchmarks/goals.py). The exit code is 0 whether
or not goals pass: a missed goal is a finding to read, not a crash.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import importlib.metadata
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import chart, footprint, goals, int8, report
from benchmarks.http_load import Upload, run_load
from benchmarks.inprocess import time_stages
from benchmarks.model import ModelFiles, parity, portable, resolve_model
from benchmarks.servers import ServerSpec, launched
from benchmarks.stats import summarise_ms
from benchmarks.sweep import sweep
from benchmarks.tiles import TilePhoto, pick_tiles
from harness.multipart import FORM_TYPE, IMAGE_PART, form
from harness.process import (
    MB,
    RssSampler,
    process_tree,
    tree_cpu_seconds,
    tree_peak_rss_bytes,
    tree_rss_bytes,
)
from harness.server import Server
from service.contract import ModelCard
from service.segmenter import Segmenter, prepare
from training.requirements import pinned_versions

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
CONCURRENCY = (1, 4, 16)


@dataclass(frozen=True)
class Plan:
    """How much to measure; every loop is bounded by both a count and a time."""

    quick: bool
    inprocess_repetitions: int
    inprocess_seconds: float  # per setup and tile
    original_repetitions: int  # learn.predict, and the resnet34 network, in-process
    requests: int  # per setup and concurrency level
    request_seconds: float
    sweep_seconds: float  # per service configuration and concurrency level
    cold_starts: int  # of the service; each other setup starts once
    startup_timeout: float
    calibration_images: int  # for the INT8 copy


FULL = Plan(False, 300, 20.0, 30, 500, 20.0, 10.0, 5, 180.0, 32)
QUICK = Plan(True, 10, 1.0, 0, 30, 2.0, 1.0, 1, 60.0, 8)
# Peers run in their own processes: onnxruntime's telemetry stays off there too.
PEER_ENV = {"ORT_DISABLE_TELEMETRY": "1"}
BENTOML_ENV = {"BENTOML_DO_NOT_TRACK": "True", **PEER_ENV}


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    plan = QUICK if args.quick else FULL
    if args.requests or args.request_seconds:
        plan = dataclasses.replace(
            plan,
            requests=args.requests or plan.requests,
            request_seconds=args.request_seconds or plan.request_seconds,
        )
    results = run(plan, args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "latest.md").write_text(report.markdown(results))
    chart.chart(results, args.out / "latest.png")
    print(f"\nWrote {args.out}/latest.json, latest.md and latest.png")
    for goal in results["goals"]:
        verdict = {True: "PASS", False: "FAIL", None: "N/A "}[goal["passed"]]
        print(f"{verdict}  {goal['goal']}: {goal['measured']}  (goal: {goal['target']})")
    return 0


def run(plan: Plan, args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    _log(f"{'quick' if plan.quick else 'full'} run; load average {os.getloadavg()}")
    model = resolve_model(args.onnx, args.checkpoint, args.cache_dir)
    venvs: dict[str, tuple[Path, bool]] = {}
    if not plan.quick:
        _log("venvs: the service's (requirements/serve.txt), FastAPI's and BentoML's")
        venvs["serving"] = footprint.serving_venv(args.cache_dir, reuse=args.reuse_serve_venv)
        for peer in ("fastapi", "bentoml"):
            venvs[peer] = footprint.peer_venv(args.cache_dir, peer, reuse=args.reuse_serve_venv)
    tiles = pick_tiles()
    upload = Upload(form([(IMAGE_PART, tiles["typical"].data)]), FORM_TYPE)

    # onnxruntime first, before torch is imported, as the service runs it: alone.
    served = Segmenter.from_onnx(model.onnx)
    results: dict[str, Any] = {
        "meta": _meta(plan, model, served, tiles),
        "inprocess": {},
        "http": {},
        "cold_start": {},
        "memory": {},
    }
    results["inprocess"]["onnxruntime"] = _time_tiles(served, tiles, plan)
    int8_path = args.cache_dir / "int8" / "segmenter-int8.onnx"
    results["int8"] = _int8(served, model.onnx, int8_path, tiles, plan, results)
    from benchmarks.baselines import torch_segmenter

    eager = torch_segmenter(model.checkpoint, served)
    batch, _ = prepare(_gray(tiles["typical"]), served.policy)
    results["meta"]["model"]["max_abs_diff_onnx_vs_torch"] = parity(
        served.runner, eager.runner, batch
    )
    results["meta"]["model"]["pytorch"] = eager.providers[0]
    results["inprocess"]["pytorch"] = _time_tiles(eager, tiles, plan)
    min_area = served.min_area
    del served, eager  # their thread pools must not compete with the servers
    gc.collect()

    def python(venv: str) -> str:
        return str(venvs[venv][0] / "bin" / "python") if venv in venvs else sys.executable

    service = ServerSpec(
        "service", "service", env={"MODEL_PATH": str(model.onnx)}, python=python("serving")
    )
    specs = [
        service,
        ServerSpec(
            "fastapi",
            "benchmarks.fastapi_app",
            env={"MODEL_PATH": str(model.onnx), **PEER_ENV},
            python=python("fastapi"),
        ),
        ServerSpec(
            "pytorch",
            "benchmarks.torch_server",
            args=["--checkpoint", str(model.checkpoint)],
            env={"MODEL_PATH": str(model.onnx)},
        ),
    ]
    with tempfile.TemporaryDirectory(prefix="original-learner-") as folder:
        if plan.quick:
            for setup in ("bentoml", "original", "service-resnet34"):
                results["http"][setup] = {"skipped": "--quick skips it"}
            results["inprocess"]["original"] = {"skipped": "--quick skips it"}
        else:
            learner, resnet34 = _original(tiles, plan, Path(folder), min_area, results)
            gc.collect()  # the Learner is big; its memory must not crowd the servers
            specs += [
                ServerSpec(
                    "bentoml",
                    "bentoml",
                    args=[
                        *("serve", "benchmarks.bento_service:TileSegmenter"),
                        *("--host", "127.0.0.1", "--port", "{port}"),
                    ],
                    env={
                        "MODEL_PATH": str(model.onnx),
                        "BENTOML_HOME": str(args.cache_dir / "bentoml-home"),
                        **BENTOML_ENV,
                    },
                    python=python("bentoml"),
                ),
                ServerSpec("original", "benchmarks.blog_server", args=["--learner", str(learner)]),
                ServerSpec(
                    "service-resnet34",
                    "service",
                    env={"MODEL_PATH": str(resnet34)},
                    python=python("serving"),
                ),
            ]
        _serve_all(specs, upload, plan, results)

    seconds = plan.sweep_seconds
    results["sweep"] = sweep(
        service, upload, plan.quick, plan.requests, seconds, plan.startup_timeout, _log
    )
    if plan.quick:
        results["int8"]["test_split"] = {"skipped": "--quick skips it"}
    else:
        _log("int8: scoring float and INT8 on the test split through the Segmenter")
        models = {"float": model.onnx, "int8": int8_path}
        results["int8"]["test_split"] = int8.score_on_test_split(models)
    _log("footprint")
    results["footprint"] = footprint.measure(venvs)
    results["goals"] = goals.evaluate(results)
    results["meta"]["load_average_after"] = list(os.getloadavg())
    results["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    return results


def _time_tiles(segmenter: Segmenter, tiles: dict[str, TilePhoto], plan: Plan) -> dict[str, Any]:
    timed = {}
    # In a worker thread, as the servers run inference: torch's OpenMP pool behaves
    # differently on the main thread (5x slower here when another process is busy).
    with ThreadPoolExecutor(1) as worker:
        for name, tile in tiles.items():
            _log(f"in-process {segmenter.providers[0]} {name} tile")
            timed[name] = worker.submit(
                time_stages,
                segmenter,
                tile.data,
                plan.inprocess_repetitions,
                plan.inprocess_seconds,
            ).result()
    return timed


def _int8(
    served: Segmenter,
    float_path: Path,
    int8_path: Path,
    tiles: dict[str, TilePhoto],
    plan: Plan,
    results: dict[str, Any],
) -> dict[str, Any]:
    """Quantize the served model, time the copy per stage as the float one was (into
    results["inprocess"]["onnxruntime-int8"]), and compare their answers on one photo."""
    _log(f"int8: quantizing on {plan.calibration_images} photos ({int8.calibration_source()})")
    int8.quantized_copy(float_path, int8_path, served.policy, plan.calibration_images)
    quantized = Segmenter.from_onnx(int8_path)
    timed = results["inprocess"]["onnxruntime-int8"] = _time_tiles(quantized, tiles, plan)
    floats = results["inprocess"]["onnxruntime"]
    batch, _ = prepare(_gray(tiles["typical"]), served.policy)
    return {
        "file": portable(int8_path),
        "mb": round(int8_path.stat().st_size / 1e6, 3),
        "float_mb": round(float_path.stat().st_size / 1e6, 3),
        "version": quantized.card.version if quantized.card else None,
        "calibration": {"images": plan.calibration_images, "from": int8.calibration_source()},
        "cpu": int8.cpu_features(),
        "typical_tile": int8.agreement(served.runner, quantized.runner, batch, served.threshold),
        # Float time over INT8 time: above 1, INT8 is faster.
        "inference_speedup": {
            name: round(
                floats[name]["stages"]["inference"]["p50_ms"]
                / timed[name]["stages"]["inference"]["p50_ms"],
                2,
            )
            for name in tiles
        },
    }


def _original(
    tiles: dict[str, TilePhoto], plan: Plan, folder: Path, min_area: int, results: dict[str, Any]
) -> tuple[Path, Path]:
    """Build the original's Learner and export its network through the project's export;
    time both in-process; return the Learner's .pkl and the ONNX file."""
    from benchmarks import blog_learner

    _log("original: building and exporting the fastai Learner, and its network to ONNX")
    pkl = blog_learner.export_learner(folder)
    learn = blog_learner.load(pkl)
    onnx_path = blog_learner.write_served_onnx(learn, folder / "resnet34.onnx", min_area)
    data = tiles["typical"].data
    gap = blog_learner.crop_parity(learn, onnx_path, data)
    resnet34 = Segmenter.from_onnx(onnx_path)
    crop = blog_learner.crop_of(data)[np.newaxis, np.newaxis]

    def repeatedly(work: Any) -> list[float]:
        work()  # warm-up
        samples, deadline = [], time.perf_counter() + plan.inprocess_seconds
        for _ in range(plan.original_repetitions):
            begun = time.perf_counter()
            work()
            samples.append(time.perf_counter() - begun)
            if time.perf_counter() > deadline:
                break
        return samples

    def analyze() -> None:
        # learn.predict draws a progress bar on stdout each time: drawn, not shown.
        with contextlib.redirect_stdout(io.StringIO()):
            blog_learner.analyze(learn, data)

    _log("original: learn.predict and the same network in onnxruntime, in-process")
    with ThreadPoolExecutor(1) as worker:  # a worker thread, as the servers run them
        analyzed = worker.submit(repeatedly, analyze).result()
        on_crop = worker.submit(repeatedly, lambda: resnet34.runner(crop)).result()
        whole = worker.submit(
            time_stages, resnet34, data, plan.original_repetitions, plan.inprocess_seconds
        ).result()
    results["inprocess"]["original"] = {
        "typical": {
            "analyze": summarise_ms(analyzed),
            "input_size": blog_learner.ORIGINAL_SIZE,
        },
        "same_network": {
            "weights": "random (unet_learner(pretrained=False)); timings do not depend on them",
            "onnx_mb": round(onnx_path.stat().st_size / 1e6, 1),
            "max_abs_diff_on_crop": gap,
            "onnx_inference_on_crop": summarise_ms(on_crop),
            "service_path_whole_photo": whole,
        },
    }
    return pkl, onnx_path


def _serve_all(
    specs: list[ServerSpec], upload: Upload, plan: Plan, results: dict[str, Any]
) -> None:
    for spec in specs:
        starts = plan.cold_starts if spec.name == "service" else 1
        cold = []
        for attempt in range(starts):
            _log(f"{spec.name}: cold start {attempt + 1}/{starts}")
            with launched(spec, upload, plan.startup_timeout) as (server, cold_start_s):
                cold.append(cold_start_s)
                if attempt < starts - 1:
                    continue
                # Load only the last start: the earlier ones measure starting alone.
                results["http"][spec.name] = _load_levels(server, upload, plan, results, spec)
        results["cold_start"][spec.name] = {
            "runs_s": [round(s, 3) for s in cold],
            "median_s": round(statistics.median(cold), 3),
            "max_s": round(max(cold), 3),
        }


def _load_levels(
    server: Server, upload: Upload, plan: Plan, results: dict[str, Any], spec: ServerSpec
) -> dict[str, Any]:
    pid = server.pid
    # A server's worker processes count with it (BentoML runs its service in a child).
    memory = {"idle_rss_mb": round(tree_rss_bytes(pid) / MB, 1)}
    levels = {}
    for concurrency in CONCURRENCY:
        _log(f"{spec.name}: HTTP load at concurrency {concurrency}")
        cpu_before = tree_cpu_seconds(pid)
        # Sampled only at the top level: the sampler thread costs the client CPU time.
        top = concurrency == max(CONCURRENCY)
        sampler = RssSampler(pid, read=tree_rss_bytes) if top else nullcontext()
        with sampler:
            level = run_load(server.port, upload, concurrency, plan.requests, plan.request_seconds)
        # CPU per answer shows waste (spinning threads, contention) that wall time on a
        # busy machine blurs.
        level["server_cpu_ms_per_request"] = round(
            1000 * (tree_cpu_seconds(pid) - cpu_before) / max(1, level["requests"]), 2
        )
        levels[str(concurrency)] = level
        if isinstance(sampler, RssSampler):
            memory["sampled_peak_under_load_mb"] = round(sampler.peak_bytes / MB, 1)
    memory["peak_rss_mb"] = round(tree_peak_rss_bytes(pid) / MB, 1)
    memory["processes"] = len(process_tree(pid))
    results["memory"][spec.name] = memory
    return {"levels": levels}


def _meta(
    plan: Plan,
    model: ModelFiles,
    served: Segmenter,
    tiles: dict[str, TilePhoto],
) -> dict[str, Any]:
    import onnxruntime

    card: ModelCard | None = served.card
    assert card is not None  # loaded from a file
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": plan.quick,
        "plan": plan.__dict__,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_before": list(os.getloadavg()),
        },
        "model": {
            **model.describe(),
            "version": card.version,
            "min_area": card.min_area,
            "threshold": card.threshold,
            "policy": card.policy.__dict__,
        },
        # What ran the service's inference here; the CUDA provider is not measured.
        "providers": {
            "service": served.providers,
            "available": onnxruntime.get_available_providers(),
        },
        "versions": {
            **{
                name: importlib.metadata.version(name)
                for name in (
                    "onnxruntime",
                    "opencv-python-headless",
                    "torch",
                    "fastai",
                    "fastapi",
                    "uvicorn",
                )
            },
            "bentoml": pinned_versions(footprint.BENTOML_REQUIREMENTS)["bentoml"],
        },
        "tiles": {name: tile.describe() for name, tile in tiles.items()},
        "http_tile": "typical",
        "client": "closed loop, keep-alive, each request timed from when it was due "
        "(its connection free); client delay and CPU reported (benchmarks/http_load.py)",
        "original_input": "the shorter side scaled to 128 px, the centre 128 x 128 cropped; "
        "a JSON list of lists of 0/1 back",
        "service_python": "the fresh serving venv" if not plan.quick else "this venv (.venv)",
    }


def _gray(tile: TilePhoto) -> Any:
    from service.imaging import decode_gray, read_header

    return decode_gray(tile.data, read_header(tile.data, max_pixels=10**9))


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of under a minute")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results folder")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("BENCH_CACHE_DIR") or tempfile.gettempdir())
        / "tile-defects-bench",
        help="serving venv and throwaway model cache (env BENCH_CACHE_DIR)",
    )
    parser.add_argument(
        "--reuse-serve-venv",
        action="store_true",
        help="skip creating the serving venv when the cached one matches serve.txt",
    )
    parser.add_argument(
        "--requests", type=int, help="HTTP requests per setup and concurrency (a bound)"
    )
    parser.add_argument(
        "--request-seconds", type=float, help="seconds per setup and concurrency (a bound)"
    )
    parser.add_argument("--onnx", type=Path, help="default: models/segmenter.onnx")
    parser.add_argument("--checkpoint", type=Path, help="default: models/checkpoint.pt")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
