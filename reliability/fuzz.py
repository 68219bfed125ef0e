"""Fuzzing: thousands of generated and damaged uploads; every answer must keep the contract.

Hypothesis draws each case (which image, which damage, how it is sent, which answer
format) from small choices, so cases stay cheap to generate and a run is reproduced from
its seed. The server runs in another process, so there is no coverage feedback: cases go
through a bounded queue to a few sender threads, and every answer is checked as it comes.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import httpx
import numpy as np
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from harness.server import Server, launch, wait_ready
from reliability import answers, corpus, mutate
from reliability.options import Options
from reliability.report import CheckResult
from reliability.server_log import record_shutdown_problems
from reliability.uploads import (
    MULTIPART_VARIANTS,
    RAW_CONTENT_TYPES,
    Expect,
    Upload,
    combine,
    raw,
    with_answer_format,
)

MAX_SAVED_FAILURES = 20


def run(options: Options) -> CheckResult:
    """Send `budget.fuzz_inputs` cases to a fresh server; zero 5xx, zero broken answers."""
    result = CheckResult("fuzz")
    started = time.monotonic()
    seeds, special = _corpus(options)
    samples = seeds + special
    server = launch(options.out_dir / "logs" / "fuzz.log", MODEL_PATH=str(options.model_path))
    try:
        wait_ready(server)
        result.rss_before_mb = server.rss_mb()
        tally = _Tally(options.failures_dir / "fuzz")
        sent = _fuzz(server, samples, explicit_uploads(special), options, tally)
        result.inputs = sent
        result.statuses = tally.statuses
        result.problems = tally.problems
        result.passed = not tally.problems
        alive = server.healthy() and _valid_request_works(server, samples[0].data)
        result.rss_after_mb = server.rss_mb()
        if not alive:
            result.fail("the server was not alive and serving at the end")
    finally:
        exit_code = server.stop()
    record_shutdown_problems(result, server, exit_code)
    if result.inputs < options.budget.fuzz_inputs:
        result.fail(f"only {result.inputs} of {options.budget.fuzz_inputs} inputs within time")
    kinds = Counter(u.split(" ")[0] for u in tally.descriptions)
    result.figures.update(
        key=f"{result.inputs} inputs, {result.server_errors} 5xx",
        seed=options.seed,
        corpus_samples=len(samples),
        inputs_by_transport=dict(kinds),
        explicit_cases=f"{len(special)} special images x 3 answer formats",
        must_accept_cases=tally.expectations[Expect.ACCEPT],
        must_refuse_cases=tally.expectations[Expect.REFUSE],
        distinct_error_messages=len(tally.messages),
        inputs_per_second=round(result.inputs / max(time.monotonic() - started, 1e-9), 1),
    )
    result.seconds = time.monotonic() - started
    return result


@st.composite
def uploads(draw: st.DrawFn, samples: list[corpus.Sample]) -> Upload:
    """One case: an image, maybe damaged, sent raw or in a (maybe malformed) multipart body."""
    sample = draw(st.sampled_from(samples))
    # A third intact: damaged files test the refusals, intact ones that nothing valid is lost.
    if draw(st.integers(0, 2)) == 0:
        payload, damage = sample.data, "intact"
    else:
        payload, damage = draw(_damaged(sample.data))
    intact = Expect.ACCEPT if damage == "intact" and sample.valid else Expect.EITHER
    if not sample.valid and damage == "intact":
        intact = Expect.REFUSE
    transport = draw(st.sampled_from(["raw"] * 4 + ["chunked"] + ["multipart"] * 3))
    if transport == "multipart":
        variant = draw(st.sampled_from(sorted(MULTIPART_VARIANTS)))
        upload = MULTIPART_VARIANTS[variant](payload, draw(st.integers(0, 2**31)))
    else:
        # Types the service must accept are drawn as often as all the others together.
        accepted = [t for t, e in RAW_CONTENT_TYPES.items() if e is Expect.ACCEPT]
        others = [t for t, e in RAW_CONTENT_TYPES.items() if e is not Expect.ACCEPT]
        content_type = draw(st.sampled_from(accepted) | st.sampled_from(others))
        upload = raw(payload, content_type, chunked=transport == "chunked")
    upload = with_answer_format(upload, draw(st.integers(0, 30)))
    return Upload(
        f"{upload.description} | {sample.name} {damage}",
        upload.body,
        upload.payload,
        upload.headers,
        upload.query,
        upload.answer,
        combine(upload.expect, intact),
        upload.chunked,
    )


def _damaged(data: bytes) -> st.SearchStrategy[tuple[bytes, str]]:
    """(bytes, description) of the ways a file gets damaged."""
    size = len(data)
    position = st.integers(0, max(size - 1, 0))
    header_position = st.integers(0, min(size, 600))
    some = st.lists(position | header_position, min_size=1, max_size=16)
    side = st.sampled_from(mutate.INTERESTING_SIDES)
    return st.one_of(
        position.map(lambda k: (mutate.truncate(data, k), f"truncated at {k}")),
        header_position.map(lambda k: (mutate.truncate(data, k), f"truncated at {k}")),
        some.map(lambda ps: (mutate.flip_bits(data, ps), f"{len(ps)} bit flips")),
        st.tuples(some, st.sampled_from(mutate.INTERESTING_BYTES)).map(
            lambda a: (mutate.set_bytes(data, a[0], a[1]), f"{len(a[0])} bytes set to {a[1]}")
        ),
        st.tuples(position, st.integers(1, 4096)).map(
            lambda a: (mutate.delete_slice(data, *a), f"{a[1]} bytes deleted at {a[0]}")
        ),
        st.tuples(position, st.integers(1, 4096)).map(
            lambda a: (mutate.duplicate_slice(data, *a), f"{a[1]} bytes repeated at {a[0]}")
        ),
        st.tuples(position, st.integers(1, 4096), st.integers(0, 2**32)).map(
            lambda a: (mutate.insert_random(data, *a), f"{a[1]} random bytes inserted")
        ),
        st.sampled_from((b"", *mutate.SIGNATURES)).map(
            lambda s: (mutate.replace_magic(data, s), f"magic replaced by {s[:8]!r}")
        ),
        st.tuples(side, side).map(
            lambda wh: (mutate.patch_dimensions(data, *wh), f"header says {wh[0]}x{wh[1]}")
        ),
        st.tuples(st.integers(0, 200_000), st.integers(0, 2**32)).map(
            lambda a: (mutate.random_bytes(*a), f"{a[0]} random bytes")
        ),
        st.tuples(st.sampled_from(mutate.SIGNATURES[:5]), st.integers(0, 5000), st.integers()).map(
            lambda a: (a[0] + mutate.random_bytes(a[1], a[2]), f"{a[0][:4]!r} + random bytes")
        ),
        st.just((b"", "empty")),
    )


@dataclass
class _Tally:
    """Answers and problems, shared by the sender threads."""

    failures_dir: Path
    statuses: Counter[str] = field(default_factory=Counter)
    expectations: Counter[Expect] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    messages: set[str] = field(default_factory=set)
    descriptions: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, upload: Upload, status: str, problem: str | None, message: str | None) -> None:
        with self.lock:
            self.statuses[status] += 1
            self.expectations[upload.expect] += 1
            self.descriptions.append(upload.description)
            if message:
                self.messages.add(message)
            if problem:
                self.problems.append(f"{problem} <- {upload.description}")
                if len(self.problems) <= MAX_SAVED_FAILURES:
                    self._save(upload, len(self.problems))

    def _save(self, upload: Upload, number: int) -> None:
        """The failing request, to replay with curl --data-binary @N.body -H ..."""
        self.failures_dir.mkdir(parents=True, exist_ok=True)
        (self.failures_dir / f"{number}.body").write_bytes(upload.body)
        case = {"description": upload.description, "headers": upload.headers, "query": upload.query}
        (self.failures_dir / f"{number}.json").write_text(json.dumps(case, indent=2))


_DONE = object()


def _fuzz(
    server: Server,
    samples: list[corpus.Sample],
    explicit: list[Upload],
    options: Options,
    tally: _Tally,
) -> int:
    """The explicit uploads, then generated ones up to the budget; returns how many sent."""
    budget = options.budget
    deadline = time.monotonic() + budget.fuzz_seconds
    cases: queue.Queue[object] = queue.Queue(maxsize=4 * budget.fuzz_workers)
    senders = [
        threading.Thread(target=_send_all, args=(server, cases, tally, deadline), daemon=True)
        for _ in range(budget.fuzz_workers)
    ]
    for sender in senders:
        sender.start()
    for upload in explicit:
        cases.put(upload)

    @seed(options.seed)
    @settings(
        max_examples=max(budget.fuzz_inputs - len(explicit), 1),
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(uploads(samples))
    def generate(upload: Upload) -> None:
        if time.monotonic() < deadline:  # past it, let hypothesis finish without sending
            cases.put(upload)

    generate()
    for _ in senders:
        cases.put(_DONE)
    for sender in senders:
        sender.join(max(deadline - time.monotonic(), 0) + 60)
    return sum(tally.statuses.values())


def _send_all(server: Server, cases: queue.Queue[object], tally: _Tally, deadline: float) -> None:
    with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
        while (upload := cases.get()) is not _DONE:
            assert isinstance(upload, Upload)
            if time.monotonic() > deadline:
                continue  # drain the queue so the generator never blocks
            status, problem, message = _send(client, upload)
            tally.record(upload, status, problem, message)


def _send(client: httpx.Client, upload: Upload) -> tuple[str, str | None, str | None]:
    """(status or error kind, what breaks the contract or None, the error message or None)."""
    content = _pieces(upload.body) if upload.chunked else upload.body
    try:
        response = client.post(
            "/segment" + (f"?{upload.query}" if upload.query else ""),
            content=content,
            headers=upload.headers,
        )
    except httpx.HTTPError as error:
        return f"error:{type(error).__name__}", f"no answer ({error!r})", None
    status = response.status_code
    content_type = response.headers.get("content-type", "")
    message = None
    if 200 <= status < 300:
        size = answers.decoded_size(upload.payload)
        problem = answers.success_problem(
            status, content_type, response.content, upload.answer, size
        )
        if problem is None and upload.expect is Expect.REFUSE:
            problem = f"{status} for a request that must be refused"
    elif 400 <= status < 500:
        problem = answers.error_problem(status, content_type, response.content)
        if problem is None:
            message = response.json()["error"]
            if upload.expect is Expect.ACCEPT:
                problem = f"{status} for a valid upload: {message}"
    else:
        problem = f"{status} answer: {response.text[:200]!r}"
    return str(status), problem, message


def _pieces(body: bytes) -> list[bytes]:
    third = max(len(body) // 3, 1)
    return [body[i : i + third] for i in range(0, len(body), third)] or [b""]


def _corpus(options: Options) -> tuple[list[corpus.Sample], list[corpus.Sample]]:
    """Real photos, and the special images (exotic kinds, side limits, forged headers)."""
    seeds = corpus.seed_samples(options.data_dir, 12, options.seed)
    tile = cv2.imdecode(np.frombuffer(seeds[0].data, np.uint8), cv2.IMREAD_GRAYSCALE)
    special = [
        *corpus.exotic_samples(tile),
        *corpus.side_limit_samples(),
        *corpus.forged_samples(),
    ]
    return seeds, special


def explicit_uploads(special: list[corpus.Sample]) -> list[Upload]:
    """Each special image intact, raw, in each answer format: too rare to leave to chance
    (an overlay 65,535 pixels long was a 500 that only this found)."""
    uploads = []
    for sample in special:
        for answer_format in (1, 2, 3):  # ?format=mask, json, overlay
            upload = with_answer_format(raw(sample.data, "application/octet-stream"), answer_format)
            expect = Expect.ACCEPT if sample.valid else Expect.REFUSE
            uploads.append(
                Upload(
                    f"{upload.description} | {sample.name} intact",
                    upload.body,
                    upload.payload,
                    upload.headers,
                    upload.query,
                    upload.answer,
                    expect,
                )
            )
    return uploads


def _valid_request_works(server: Server, image: bytes) -> bool:
    try:
        response = httpx.post(
            f"{server.base_url}/segment",
            content=image,
            headers={"Content-Type": "image/jpeg"},
            timeout=30,
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200
