"""Schema-driven fuzzing: requests generated from the service's own GET /openapi.json.

Schemathesis reads the document from a real server and draws requests for every
operation: positive ones that fit the document and negative ones that break it (an
unknown parameter value, a body of the wrong type). No answer may be a 5xx, and every
answer must be what the document promises (status, content type, body schema).

Bounded and reproducible: `budget.schema_examples` cases per operation and generation
mode, drawn from the run's seed, and nothing sent past `budget.schema_seconds`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from itertools import product
from pathlib import Path

import cv2
import numpy as np
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from harness.server import Server, launch, wait_ready
from reliability import corpus, mutate
from reliability.options import Options
from reliability.report import CheckResult
from reliability.server_log import record_shutdown_problems

# The body types of POST /segment; left to Schemathesis, a body would be random bytes only.
IMAGE_MEDIA_TYPES = ("image/*", "application/octet-stream")
# What a schema cannot say: that a body of `format: binary` must also be a readable image.
# Schemathesis would count each refused random body as a wrong answer.
EXCLUDED_CHECKS = [positive_data_acceptance]
MAX_SAVED_FAILURES = 20


def run(options: Options) -> CheckResult:
    """Fuzz a fresh server from its document; zero 5xx, zero answers off the document."""
    result = CheckResult("schema")
    started = time.monotonic()
    photo = corpus.seed_samples(options.data_dir, 1, options.seed)[0].data
    tile = cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_GRAYSCALE)
    bodies = image_bodies(tile)
    for media_type in IMAGE_MEDIA_TYPES:
        schemathesis.openapi.media_type(media_type, bodies)
    server = launch(options.out_dir / "logs" / "schema.log", MODEL_PATH=str(options.model_path))
    try:
        wait_ready(server)
        result.rss_before_mb = server.rss_mb()
        fuzzer = _Fuzzer(server, options, result)
        fuzzer.fuzz_every_operation()
        result.rss_after_mb = server.rss_mb()
        if not server.healthy():
            result.fail("the server was not alive at the end")
    finally:
        exit_code = server.stop()
    record_shutdown_problems(result, server, exit_code)
    server_errors = sum(n for status, n in result.statuses.items() if status.startswith("5"))
    result.figures.update(
        key=f"{result.inputs} cases, {server_errors} 5xx, {fuzzer.violations} violations",
        seed=options.seed,
        operations=fuzzer.operations,
        cases_by_generation_mode=dict(fuzzer.by_mode),
        answers_5xx=server_errors,
        schema_violations=fuzzer.violations,
        cases_per_second=round(result.inputs / max(time.monotonic() - started, 1e-9), 1),
    )
    # The bounded queue's 503 is by design under load, but one client never fills it.
    if server_errors:
        result.fail(f"{server_errors} answers 5xx")
    result.seconds = time.monotonic() - started
    return result


def image_bodies(tile: np.ndarray) -> st.SearchStrategy[bytes]:
    """Real images of each format and size, bytes of a real image cut or flipped, or noise."""
    images = [
        corpus.encode(extension, picture)
        for extension in (".jpg", ".png", ".bmp", ".tiff")
        for picture in (tile, tile[:1, :1], tile[:37, :101])
    ]
    cut = st.tuples(st.sampled_from(images), st.floats(0, 1)).map(
        lambda pair: mutate.truncate(pair[0], int(len(pair[0]) * pair[1]))
    )
    flipped = st.tuples(st.sampled_from(images), st.lists(st.integers(0, 80_000), max_size=8)).map(
        lambda pair: mutate.flip_bits(pair[0], pair[1])
    )
    return st.one_of(st.sampled_from(images), cut, flipped, st.binary(max_size=2048))


class _Fuzzer:
    """Sends each operation's cases in turn and tallies the answers into `result`."""

    def __init__(self, server: Server, options: Options, result: CheckResult) -> None:
        self.server = server
        self.options = options
        self.result = result
        self.deadline = time.monotonic() + options.budget.schema_seconds
        self.by_mode: Counter[str] = Counter()
        self.operations = 0
        self.violations = 0
        self.session = requests.Session()  # keep-alive, as a client would

    def fuzz_every_operation(self) -> None:
        schema = schemathesis.openapi.from_url(f"{self.server.base_url}/openapi.json")
        operations = [operation.ok() for operation in schema.get_all_operations()]
        self.operations = len(operations)
        with self.session:
            for operation, mode in product(operations, GenerationMode):
                raw = operation.definition.raw
                has_inputs = any(operation.iter_parameters()) or "requestBody" in raw
                # An operation without inputs has nothing a negative case could break.
                if mode == GenerationMode.NEGATIVE and not has_inputs:
                    continue
                if time.monotonic() > self.deadline:
                    self.result.fail(
                        f"time bound of {self.options.budget.schema_seconds:.0f} s reached at "
                        f"{operation.method.upper()} {operation.path} ({mode.value}) after "
                        f"{self.result.inputs} cases"
                    )
                    return
                self._fuzz(operation.as_strategy(generation_mode=mode), mode)

    def _fuzz(self, cases: st.SearchStrategy[schemathesis.Case], mode: GenerationMode) -> None:
        @seed(self.options.seed)
        @settings(
            max_examples=self.options.budget.schema_examples,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases)
        def exchange(case: schemathesis.Case) -> None:
            if time.monotonic() < self.deadline:  # past it, let hypothesis finish unsent
                self._exchange(case, mode)

        exchange()

    def _exchange(self, case: schemathesis.Case, mode: GenerationMode) -> None:
        self.result.inputs += 1
        self.by_mode[mode.value] += 1
        try:
            response = case.call(base_url=self.server.base_url, session=self.session, timeout=30)
        except requests.RequestException as error:
            self.result.statuses[f"error:{type(error).__name__}"] += 1
            self._problem(case, f"no answer ({error!r})")
            return
        self.result.statuses[str(response.status_code)] += 1
        try:
            case.validate_response(response, excluded_checks=EXCLUDED_CHECKS)
        except (Failure, FailureGroup) as failure:
            self.violations += 1
            found = failure.exceptions if isinstance(failure, FailureGroup) else (failure,)
            # Titles only: the full text repeats the body as a curl line; _save keeps it.
            titles = "; ".join(f"{f.code} {f.title}" for f in found)
            self._problem(case, f"-> {response.status_code}: {titles}")

    def _problem(self, case: schemathesis.Case, problem: str) -> None:
        self.result.fail(f"{case.method} {case.formatted_path} {problem}")
        if len(self.result.problems) <= MAX_SAVED_FAILURES:
            _save(case, self.options.failures_dir / "schema", len(self.result.problems))


def _save(case: schemathesis.Case, failures_dir: Path, number: int) -> None:
    """The failing request, to replay: its body and what else was sent with it."""
    failures_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(case.body, bytes):
        (failures_dir / f"{number}.body").write_bytes(case.body)
    request = {
        "method": case.method,
        "path": case.formatted_path,
        "query": dict(case.query or {}),
        "headers": dict(case.headers or {}),
        "media_type": case.media_type,
        "body": None if isinstance(case.body, bytes) else case.body,
    }
    (failures_dir / f"{number}.json").write_text(json.dumps(request, indent=2, default=repr))
