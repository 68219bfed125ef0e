"""`python -m benchmarks.run`: measure the service against its baselines in one run.

Setups, all on the same model weights and the same real photos:
- service: `python -m service` (onnxruntime), the thing users deploy;
- pytorch: the same network in torch eager mode, in-process and behind the service's
  own HTTP app (benchmarks/torch_server.py);
- fastai: the blog's way, `load_learner` + `learn.predict` behind a small Starlette
  endpoint (benchmarks/blog_server.py); skipped by --quick.

Writes benchmarks/results/latest.json, latest.md and latest.png (or into --out) and
prints one pass/fail line per goal (benchmarks/goals.py). The exit code is 0 whether
or not goals pass: a missed goal is a finding to read, not a crash.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.metadata
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

from benchmarks import footprint, goals, report
from benchmarks.http_load import Upload, run_load
from benchmarks.inprocess import time_stages
from benchmarks.model import ModelFiles, parity, resolve_model
from benchmarks.servers import ServerSpec, launched
from benchmarks.tiles import TilePhoto, pick_tiles
from harness.multipart import FORM_TYPE, IMAGE_PART, form
from harness.process import MB, RssSampler, cpu_seconds, peak_rss_bytes, rss_bytes
from harness.server import Server
from service.contract import ModelCard
from service.segmenter import Segmenter, prepare

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
CONCURRENCY = (1, 4, 16)


@dataclass(frozen=True)
class Plan:
    """How much to measure; every loop is bounded by both a count and a time."""

    quick: bool
    inprocess_repetitions: int
    inprocess_seconds: float  # per setup and tile
    fastai_repetitions: int
    requests: int  # per setup and concurrency level
    request_seconds: float
    cold_starts: int  # of the service; each baseline starts once
    startup_timeout: float


FULL = Plan(False, 300, 20.0, 40, 500, 20.0, 5, 120.0)
QUICK = Plan(True, 10, 1.0, 0, 30, 2.0, 1, 60.0)


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
    report.chart(results, args.out / "latest.png")
    print(f"\nWrote {args.out}/latest.json, latest.md and latest.png")
    for goal in results["goals"]:
        verdict = {True: "PASS", False: "FAIL", None: "N/A "}[goal["passed"]]
        print(f"{verdict}  {goal['goal']}: {goal['measured']}  (goal: {goal['target']})")
    return 0


def run(plan: Plan, args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    _log(f"{'quick' if plan.quick else 'full'} run; load average {os.getloadavg()}")
    model = resolve_model(args.onnx, args.checkpoint, args.cache_dir)
    venv, reused = None, False
    if not plan.quick:
        _log("serving venv: requirements/serve.txt in a fresh venv")
        venv, reused = footprint.serving_venv(args.cache_dir, reuse=args.reuse_serve_venv)
    tiles = pick_tiles()
    upload = Upload(form([(IMAGE_PART, tiles["typical"].data)]), FORM_TYPE)

    # onnxruntime first, before torch is imported, as the service runs it: alone.
    served = Segmenter.from_onnx(model.onnx)
    results: dict[str, Any] = {
        "meta": _meta(plan, model, served.card, tiles),
        "inprocess": {},
        "http": {},
        "cold_start": {},
        "memory": {},
    }
    results["inprocess"]["onnxruntime"] = _time_tiles(served, tiles, plan)
    from benchmarks.baselines import torch_segmenter

    eager = torch_segmenter(model.checkpoint, served)
    batch, _ = prepare(_gray(tiles["typical"]), served.policy)
    results["meta"]["model"]["max_abs_diff_onnx_vs_torch"] = parity(
        served.runner, eager.runner, batch
    )
    results["meta"]["model"]["pytorch"] = eager.providers[0]
    results["inprocess"]["pytorch"] = _time_tiles(eager, tiles, plan)
    threshold = served.threshold
    del served, eager  # their thread pools must not compete with the servers
    gc.collect()

    specs = [
        ServerSpec(
            "service",
            "service",
            env={"MODEL_PATH": str(model.onnx)},
            python=str(venv / "bin" / "python") if venv else sys.executable,
        ),
        ServerSpec(
            "pytorch",
            "benchmarks.torch_server",
            args=["--checkpoint", str(model.checkpoint)],
            env={"MODEL_PATH": str(model.onnx)},
        ),
    ]
    with tempfile.TemporaryDirectory(prefix="blog-learner-") as folder:
        if plan.quick:
            skipped = {"skipped": "--quick skips the fastai baseline"}
            results["inprocess"]["fastai"] = results["http"]["fastai"] = skipped
        else:
            pkl, results["inprocess"]["fastai"] = _fastai_inprocess(
                model, threshold, tiles, plan, folder
            )
            specs.append(ServerSpec("fastai", "benchmarks.blog_server", args=["--learner", pkl]))
        _serve_all(specs, upload, plan, results)

    _log("footprint")
    results["footprint"] = footprint.measure(venv, reused)
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


def _fastai_inprocess(
    model: ModelFiles, threshold: float, tiles: dict[str, TilePhoto], plan: Plan, folder: str
) -> tuple[str, dict[str, Any]]:
    """Export the blog-style Learner, with the served model's threshold, and time
    learn.predict in-process on the typical tile."""
    from benchmarks import blog_learner
    from benchmarks.stats import summarise_ms
    from training.checkpoint import load_checkpoint

    _log("fastai: exporting the Learner, timing learn.predict in-process")
    trained = load_checkpoint(model.checkpoint)
    sources = [tile.path for tile in tiles.values()]
    pkl = blog_learner.export_learner(trained.net, threshold, sources, Path(folder))
    learn = blog_learner.load(pkl)
    data = tiles["typical"].data

    def predict_repeatedly() -> list[float]:
        blog_learner.predict_png(learn, data)  # warm-up
        samples, deadline = [], time.perf_counter() + plan.inprocess_seconds
        for _ in range(plan.fastai_repetitions):
            begun = time.perf_counter()
            blog_learner.predict_png(learn, data)
            samples.append(time.perf_counter() - begun)
            if time.perf_counter() > deadline:
                break
        return samples

    with ThreadPoolExecutor(1) as worker:  # a worker thread, as in the blog's server
        samples = worker.submit(predict_repeatedly).result()
    timing = {
        "typical": {"predict": summarise_ms(samples), "input_size": blog_learner.BLOG_SIZE},
    }
    return str(pkl), timing


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
    memory = {"idle_rss_mb": round(rss_bytes(pid) / MB, 1)}
    levels = {}
    for concurrency in CONCURRENCY:
        _log(f"{spec.name}: HTTP load at concurrency {concurrency}")
        cpu_before = cpu_seconds(pid)
        # Sampled only at the top level: the sampler thread costs the client CPU time.
        sampler = RssSampler(pid) if concurrency == max(CONCURRENCY) else nullcontext()
        with sampler:
            level = run_load(server.port, upload, concurrency, plan.requests, plan.request_seconds)
        # CPU per answer shows waste (spinning threads, contention) that wall time on a
        # busy machine blurs.
        level["server_cpu_ms_per_request"] = round(
            1000 * (cpu_seconds(pid) - cpu_before) / max(1, level["requests"]), 2
        )
        levels[str(concurrency)] = level
        if isinstance(sampler, RssSampler):
            memory["sampled_peak_under_load_mb"] = round(sampler.peak_bytes / MB, 1)
    memory["peak_rss_mb"] = round(peak_rss_bytes(pid) / MB, 1)
    results["memory"][spec.name] = memory
    return {"levels": levels}


def _meta(
    plan: Plan,
    model: ModelFiles,
    card: ModelCard,
    tiles: dict[str, TilePhoto],
) -> dict[str, Any]:
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
        "versions": {
            name: importlib.metadata.version(name)
            for name in (
                "onnxruntime",
                "opencv-python-headless",
                "torch",
                "fastai",
                "uvicorn",
            )
        },
        "tiles": {name: tile.describe() for name, tile in tiles.items()},
        "http_tile": "typical",
        "client": "closed loop, keep-alive, each request timed from when it was due "
        "(its connection free); client delay and CPU reported (benchmarks/http_load.py)",
        "fastai_input": "224 x 224, squished (the blog's size), mask scaled back",
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
