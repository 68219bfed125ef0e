"""Damaged model files: the service must refuse to start, with one clear line on stderr.

onnxruntime refuses what does not parse (empty, truncated, random bytes, a pickle), but
a flipped bit inside the weights still parses: only a checksum sees it, so the same
variants are tried again with MODEL_SHA256 set to the intact file's hash. The pickle
variant is a booby trap: unpickling it would create a marker folder, which must not exist.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness.server import get_status, launch
from reliability.options import Options
from reliability.report import CheckResult

START_TIMEOUT_SECONDS = 30.0
QUICK_VARIANTS = (
    "truncated to half",
    "a pickle (torch-style checkpoint)",
    "one bit flipped in the weights",
)


def variants(intact: bytes, marker: Path) -> dict[str, tuple[bytes, bool]]:
    """name -> (file content, whether onnxruntime alone can tell it is damaged)."""
    middle = len(intact) // 2
    return {
        "empty": (b"", True),
        "truncated to half": (intact[:middle], True),
        "last 64 bytes cut": (intact[:-64], True),
        "random bytes": (os.urandom(len(intact)), True),
        # Zeros in the weights still parse (a small model's middle may be structure).
        "4 KB zeroed in the middle": (
            intact[: middle - 2048] + bytes(4096) + intact[middle + 2048 :],
            False,
        ),
        "a pickle (torch-style checkpoint)": (pickle.dumps({"state_dict": _Trap(marker)}), True),
        "one bit flipped in the weights": (_flip_weight_bit(intact), False),
    }


def run(options: Options) -> CheckResult:
    result = CheckResult("model_files")
    started = time.monotonic()
    intact = options.model_path.read_bytes()
    digest = hashlib.sha256(intact).hexdigest()
    with tempfile.TemporaryDirectory(prefix="model-files-") as scratch:
        folder = Path(scratch)
        marker = folder / "UNPICKLED"
        cases: list[tuple[str, Path, dict[str, str], bool]] = []
        for name, (content, detectable) in variants(intact, marker).items():
            if options.quick and name not in QUICK_VARIANTS:
                continue
            path = folder / f"{len(cases)}.onnx"
            path.write_bytes(content)
            cases.append((name, path, {}, detectable))
            if options.quick and detectable:
                continue  # quick mode: the checksum is tried on the undetectable case only
            cases.append((f"{name}, MODEL_SHA256 set", path, {"MODEL_SHA256": digest}, True))
        if not options.quick:  # the checksum must not refuse the intact file
            cases.append(
                ("intact, MODEL_SHA256 set", options.model_path, {"MODEL_SHA256": digest}, False)
            )
        with ThreadPoolExecutor(2) as pool:
            logs = [folder / f"start-{n}.log" for n in range(len(cases))]
            outcomes = list(pool.map(_start, [c[1] for c in cases], [c[2] for c in cases], logs))
        if marker.exists():
            result.fail("the service unpickled the model file (the pickle's trap fired)")
    outcome_figures = {}
    for (name, _, _, must_refuse), (refused, ready, stderr) in zip(cases, outcomes, strict=True):
        result.inputs += 1
        verdict = "refused" if refused else ("started" if ready else "neither")
        result.statuses[verdict] += 1
        lines = stderr.strip().splitlines()
        outcome_figures[name] = f"{verdict}: {lines[0][:160] if lines else ''}"
        if must_refuse and not refused:
            result.fail(f"{name}: the service {verdict} instead of refusing to start")
        if refused and (len(lines) != 1 or not lines[0].startswith("error: Model file")):
            result.fail(f"{name}: refused, but not with one 'error: Model file' line: {lines[:5]}")
        if not must_refuse and not refused and not ready:
            result.fail(f"{name}: neither started nor refused: {lines[:5]}")
    result.figures.update(outcome_figures)
    result.figures["key"] = (
        f"{result.statuses['refused']} refused with one line, {result.statuses['started']} started"
    )
    result.seconds = time.monotonic() - started
    return result


class _Trap:
    """Pickles to a call of os.mkdir(marker): proof of unpickling if the folder appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return os.mkdir, (str(self.marker),)


def _start(model_path: Path, settings: dict[str, str], log_path: Path) -> tuple[bool, bool, str]:
    """(refused: exited non-zero, ready: answered /ready 200, output) of one start."""
    server = launch(log_path, MODEL_PATH=str(model_path), **settings)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    ready = False
    while time.monotonic() < deadline and server.running():
        if get_status(server.port, "/ready", timeout=1.0) == 200:
            ready = True
            break
        time.sleep(0.05)
    exit_code = server.stop()
    refused = not ready and exit_code not in (0, -15)
    return refused, ready, server.log()


def _flip_weight_bit(model: bytes) -> bytes:
    """The model with one mantissa bit flipped in its largest weight tensor."""
    import onnx  # only here: reading the graph needs the onnx package of the dev tools

    graph = onnx.load_model_from_string(model).graph
    largest = max(graph.initializer, key=lambda tensor: len(tensor.raw_data), default=None)
    if largest is None or not largest.raw_data:
        position = len(model) // 2
    else:
        position = model.find(largest.raw_data) + len(largest.raw_data) // 2
    damaged = bytearray(model)
    damaged[position] ^= 0x04
    return bytes(damaged)
