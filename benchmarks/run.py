"""`python -m benchmarks.run`: measure the service against what a user would pick instead.

Setups, all on the same machine, client and real photos:
- service: `python -m service` (onnxruntime), the thing users deploy;
- fastapi, bentoml: the same ONNX file, pre- and post-processing behind a plain FastAPI
  app (benchmarks/fastapi_app.py) and behind BentoML (benchmarks/bento_service.py);
- pytorch: the same network in torch eager mode, in-process and behind the service's
  own HTTP app (benchmarks/torch_server.py);
- original: the published service's way, a fastai resnet34 U-Net Learner, `load_learner`
  + 128 px centre crop + `learn.predict` + a nested-list JSON mask behind FastAPI
  (benchmarks/blog_learner.py, blog_server.py; in-process in benchmarks/original.py);
- service-resnet34: that Learner's very network and weights, exported by the project's
  export code, served by the service: the same network both ways;
- int8: the float network against its INT8 copy (export/quantize.py), in-process and on
  the test split (benchmarks/int8.py);
- the service's concurrency settings under load (benchmarks/sweep.py).
`--quick` skips the original, service-resnet34 and BentoML setups and builds no venvs.

This module runs the steps in order and serves the setups over HTTP; the steps live
beside it: how much to measure in benchmarks/plan.py, the run's description in meta.py,
per-stage in-process timing in inprocess.py.

Writes benchmarks/results/latest.json, latest.md and latest.png (or into --out) and
prints one pass/fail line per goal (benchmarks/goals.py). The exit code is 0 whether
or not goals pass: a missed goal is a finding to read, not a crash.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from benchmarks import chart, footprint, goals, int8, meta, original, report
from benchmarks.http_load import Upload, run_load
from benchmarks.inprocess import time_tiles
from benchmarks.log import log
from benchmarks.model import parity, resolve_model
from benchmarks.plan import CONCURRENCY, FULL, QUICK, Plan
from benchmarks.servers import ServerSpec, launched
from benchmarks.sweep import sweep
from benchmarks.tiles import TilePhoto, pick_tiles
from harness import REPO_ROOT
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
from service.segmenter import Segmenter, prepare

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
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
    log(f"{'quick' if plan.quick else 'full'} run; load average {os.getloadavg()}")
    model = resolve_model(args.onnx, args.checkpoint, args.cache_dir)
    venvs: dict[str, tuple[Path, bool]] = {}
    if not plan.quick:
        log("venvs: the service's (requirements/serve.txt), FastAPI's and BentoML's")
        venvs["serving"] = footprint.serving_venv(args.cache_dir, reuse=args.reuse_serve_venv)
        for peer in ("fastapi", "bentoml"):
            venvs[peer] = footprint.peer_venv(args.cache_dir, peer, reuse=args.reuse_serve_venv)
    tiles = pick_tiles()
    upload = Upload(form([(IMAGE_PART, tiles["typical"].data)]), FORM_TYPE)

    # onnxruntime first, before torch is imported, as the service runs it: alone.
    served = Segmenter.from_onnx(model.onnx)
    results: dict[str, Any] = {
        "meta": meta.describe(plan, model, served, tiles),
        "inprocess": {},
        "http": {},
        "cold_start": {},
        "memory": {},
    }
    results["inprocess"]["onnxruntime"] = time_tiles(
        served, tiles, plan.inprocess_repetitions, plan.inprocess_seconds
    )
    floating = served if model.serves_float else Segmenter.from_onnx(model.float_onnx)
    results["int8"] = int8.measure(
        served, floating, model, args.cache_dir / "int8", tiles, plan, results
    )
    from benchmarks.baselines import torch_segmenter

    eager = torch_segmenter(model.checkpoint, served)
    batch, _ = prepare(_gray(tiles["typical"]), served.policy)
    results["meta"]["model"]["max_abs_diff_onnx_vs_torch"] = parity(
        floating.runner, eager.runner, batch
    )
    results["meta"]["model"]["pytorch"] = eager.providers[0]
    results["inprocess"]["pytorch"] = time_tiles(
        eager, tiles, plan.inprocess_repetitions, plan.inprocess_seconds
    )
    min_area = served.min_area
    del served, floating, eager  # their thread pools must not compete with the servers
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
            learner, resnet34 = original.measure(tiles, plan, Path(folder), min_area, results)
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
        service, upload, plan.quick, plan.requests, seconds, plan.startup_timeout, log
    )
    if plan.quick:
        results["int8"]["test_split"] = {"skipped": "--quick skips it"}
    else:
        log("int8: scoring float and INT8 on the test split through the Segmenter")
        models = {"float": model.float_onnx, "int8": int8.int8_file(model, args.cache_dir / "int8")}
        results["int8"]["test_split"] = int8.score_on_test_split(models)
    log("footprint")
    results["footprint"] = footprint.measure(venvs)
    results["goals"] = goals.evaluate(results)
    results["meta"]["load_average_after"] = list(os.getloadavg())
    results["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    return results


def _serve_all(
    specs: list[ServerSpec], upload: Upload, plan: Plan, results: dict[str, Any]
) -> None:
    for spec in specs:
        starts = plan.cold_starts if spec.name == "service" else 1
        cold = []
        for attempt in range(starts):
            log(f"{spec.name}: cold start {attempt + 1}/{starts}")
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
        log(f"{spec.name}: HTTP load at concurrency {concurrency}")
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


def _gray(tile: TilePhoto) -> Any:
    from service.imaging import decode_gray, read_header

    return decode_gray(tile.data, read_header(tile.data, max_pixels=10**9))


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
