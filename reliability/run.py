"""Run the checks in order, print the summary table, write it as JSON and markdown.

python -m reliability            # full mode: the figures (6 to 10 minutes)
python -m reliability --quick    # quick mode: what CI runs (under a minute)
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from harness.dataset import DatasetError, tile_dataset
from harness.stand_in_model import build_stand_in_model
from reliability.options import (
    DEFAULT_MODEL,
    FULL,
    QUICK,
    RESULTS_DIR,
    Options,
)
from reliability.report import CheckResult, machine_description, summary_markdown, write_report

# In running order; each module has `run(options) -> CheckResult`.
CHECKS = (
    "fuzz",
    "schema",
    "bombs",
    "soak",
    "slow_clients",
    "restart",
    "model_files",
    "interrupted_stage",
    "security",
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite as the command line asks; 0 when every check passed."""
    arguments = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="reliability-") as scratch:
        model_path = arguments.model
        if arguments.stand_in:
            model_path = build_stand_in_model(Path(scratch) / "stand_in.onnx")
        if not model_path.is_file():
            print(
                f"error: no model at {model_path}; run `dvc repro` to train one, pass "
                "--model PATH, or --stand-in for the stand-in model.",
                file=sys.stderr,
            )
            return 2
        try:
            data_dir = arguments.data_dir or tile_dataset()
        except DatasetError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        options = Options(
            model_path=model_path.resolve(),
            data_dir=data_dir,
            out_dir=arguments.out,
            quick=arguments.quick,
            seed=arguments.seed,
            budget=QUICK if arguments.quick else FULL,
        )
        results = run_checks(options, arguments.only or CHECKS, print_progress)
    meta = {
        "mode": options.mode,
        "model": str(arguments.model if not arguments.stand_in else "stand-in"),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_description(),
        "seconds": sum(r.seconds for r in results),
        "seed": options.seed,
    }
    print()
    print(summary_markdown(results, meta))
    for path in write_report(results, meta, options.out_dir):
        print(f"wrote {path}")
    return 0 if all(r.passed for r in results) else 1


def run_checks(
    options: Options, names: Sequence[str], progress: Callable[[CheckResult], None] | None = None
) -> list[CheckResult]:
    """Each named check in turn; a check that raises is a failed check, not a stopped run."""
    options.out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for name in names:
        started = time.monotonic()
        try:
            check = importlib.import_module(f"reliability.{name}")
            result = check.run(options)
        except Exception as error:  # a broken check must not hide the others' figures
            result = CheckResult(name, passed=False, problems=[f"the check crashed: {error!r}"])
            result.seconds = time.monotonic() - started
        results.append(result)
        if progress:
            progress(result)
    return results


def print_progress(result: CheckResult) -> None:
    print(f"{result.name}: {result.verdict()} in {result.seconds:.1f} s", flush=True)
    for problem in result.problems[:5]:
        print(f"  - {problem}", flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reliability", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the CI mode, under a minute")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="the ONNX model")
    parser.add_argument(
        "--stand-in", action="store_true", help="use the stand-in model (no training)"
    )
    parser.add_argument(
        "--data-dir", type=Path, help="the dataset (default: TILE_DATA_DIR or the download cache)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where results go")
    parser.add_argument("--seed", type=int, default=Options.seed)
    parser.add_argument("--only", nargs="+", choices=CHECKS, help="run only these checks")
    return parser
