"""Soak: minutes of mixed valid and invalid uploads at concurrency 32, watching memory.

Valid uploads must get their mask or a 503 with Retry-After (the bounded queue doing its
job); invalid ones a 4xx JSON error or that same 503; nothing else. RSS at the end must
be within 10% of RSS once the server has warmed up (after 30 s in the full mode): more
would be a leak that restarts a production server every few hours.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from harness.multipart import FORM_TYPE, IMAGE_PART, form
from harness.server import Server, launch, wait_ready
from reliability import answers, corpus, mutate
from reliability.options import Options
from reliability.report import CheckResult
from reliability.server_log import record_shutdown_problems
from reliability.uploads import Upload, raw

VALID_SHARE = 0.6


def run(options: Options) -> CheckResult:
    result = CheckResult("soak")
    budget = options.budget
    started = time.monotonic()
    valid, invalid = _request_mix(options)
    server = launch(options.out_dir / "logs" / "soak.log", MODEL_PATH=str(options.model_path))
    try:
        wait_ready(server)
        result.rss_before_mb = server.rss_mb()
        _warm_up(server, valid)
        tally = _Tally()
        deadline = time.monotonic() + budget.soak_seconds
        monitor = _Monitor(server, budget.soak_baseline_seconds, deadline)
        workers = [
            threading.Thread(
                target=_work,
                args=(server, valid, invalid, tally, deadline, options.seed + number),
                daemon=True,
            )
            for number in range(budget.soak_concurrency)
        ]
        for thread in [monitor.thread, *workers]:
            thread.start()
        for thread in [monitor.thread, *workers]:
            thread.join(budget.soak_seconds + 120)
        result.rss_after_mb = server.rss_mb()
        alive = server.healthy()
    finally:
        exit_code = server.stop()
    _judge(result, tally, monitor, budget.soak_seconds, budget.soak_leak_tolerance)
    if not alive:
        result.fail("the server was not alive at the end")
    record_shutdown_problems(result, server, exit_code)
    result.seconds = time.monotonic() - started
    return result


@dataclass
class _Tally:
    statuses: Counter[str] = field(default_factory=Counter)
    problems: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # of answered valid uploads
    valid_sent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Monitor:
    """Samples RSS every second and probes /health every quarter second."""

    def __init__(self, server: Server, baseline_seconds: float, deadline: float) -> None:
        self.server = server
        self.baseline_at = time.monotonic() + baseline_seconds
        self.deadline = deadline
        self.rss: list[tuple[float, float]] = []  # (seconds since start, MiB)
        self.baseline_mb: float | None = None
        self.health_seconds: list[float] = []
        self.health_failures = 0
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        began = time.monotonic()
        next_rss = began
        with httpx.Client(base_url=self.server.base_url, timeout=10) as client:
            while (now := time.monotonic()) < self.deadline:
                if now >= next_rss:
                    mb = self.server.rss_mb()
                    self.rss.append((now - began, mb))
                    if self.baseline_mb is None and now >= self.baseline_at:
                        self.baseline_mb = mb
                    next_rss += 1.0
                try:
                    probe_began = time.monotonic()
                    ok = client.get("/health").status_code == 200
                    self.health_seconds.append(time.monotonic() - probe_began)
                    self.health_failures += not ok
                except httpx.HTTPError:
                    self.health_failures += 1
                time.sleep(0.25)


def _work(
    server: Server,
    valid: list[Upload],
    invalid: list[Upload],
    tally: _Tally,
    deadline: float,
    seed: int,
) -> None:
    chooser = random.Random(seed)
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        while time.monotonic() < deadline:
            is_valid = chooser.random() < VALID_SHARE
            upload = chooser.choice(valid if is_valid else invalid)
            began = time.monotonic()
            status, problem = _send(client, upload, is_valid)
            with tally.lock:
                tally.statuses[status] += 1
                tally.valid_sent += is_valid
                if problem:
                    tally.problems[problem] += 1
                if is_valid and status == "200":
                    tally.latencies.append(time.monotonic() - began)


def _send(client: httpx.Client, upload: Upload, is_valid: bool) -> tuple[str, str | None]:
    try:
        response = client.post(
            "/segment" + (f"?{upload.query}" if upload.query else ""),
            content=upload.body,
            headers=upload.headers,
        )
    except httpx.HTTPError as error:
        return f"error:{type(error).__name__}", f"no answer: {type(error).__name__}"
    status, content_type = response.status_code, response.headers.get("content-type", "")
    if status == 503:
        if not response.headers.get("retry-after"):
            return "503", "503 without Retry-After"
        return "503", None
    if is_valid and status != 200:
        return str(status), f"{status} for a valid upload: {response.text[:120]}"
    if 200 <= status < 300:  # a damaged JPEG may still decode: then its mask must be right
        size = answers.decoded_size(upload.payload)
        problem = answers.success_problem(status, content_type, response.content, "mask", size)
        return str(status), problem
    if not 400 <= status < 500:
        return str(status), f"{status} for an invalid upload ({upload.description})"
    return str(status), answers.error_problem(status, content_type, response.content)


def _warm_up(server: Server, valid: list[Upload]) -> None:
    """Each photo once, so the model's memory arena has met every input shape: growth
    after that is what the leak check is about, not onnxruntime sizing its buffers."""
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        for upload in valid:
            if upload.description.startswith("raw"):
                client.post("/segment", content=upload.body, headers=upload.headers)


def _request_mix(options: Options) -> tuple[list[Upload], list[Upload]]:
    """Real photos sent raw and as forms; and the mistakes a line makes, each kind once."""
    samples = corpus.seed_samples(options.data_dir, 8, options.seed)
    valid = [raw(s.data, "image/jpeg") for s in samples]
    valid += [
        Upload("multipart form", form([(IMAGE_PART, s.data)]), s.data, {"Content-Type": FORM_TYPE})
        for s in samples[::2]
    ]
    photo = samples[0].data
    invalid = [
        raw(mutate.random_bytes(20_000, options.seed), "application/octet-stream"),
        raw(mutate.truncate(photo, len(photo) // 2), "image/jpeg"),
        raw(mutate.flip_bits(photo, list(range(200, 2000, 37))), "image/jpeg"),
        raw(photo, "text/plain"),
        raw(corpus.png_declaring(40_000, 40_000), "image/png"),
        Upload(
            "bad form",
            form([(IMAGE_PART, photo)], closing=False),
            photo,
            {"Content-Type": FORM_TYPE},
        ),
        Upload("bad format", photo, photo, {"Content-Type": "image/jpeg"}, query="format=gif"),
    ]
    return valid, invalid


def _judge(
    result: CheckResult, tally: _Tally, monitor: _Monitor, seconds: float, tolerance: float
) -> None:
    result.inputs = sum(tally.statuses.values())
    result.statuses = tally.statuses
    for problem, count in tally.problems.most_common():
        result.fail(f"{count} x {problem}")
    latencies = sorted(tally.latencies) or [0.0]
    end_mb = monitor.rss[-1][1] if monitor.rss else 0.0
    baseline = monitor.baseline_mb or (monitor.rss[0][1] if monitor.rss else 0.0)
    growth = (end_mb - baseline) / baseline if baseline else 0.0
    health = sorted(monitor.health_seconds) or [0.0]
    result.figures.update(
        key=f"RSS {baseline:.0f} -> {end_mb:.0f} MiB ({growth:+.1%}) after the warm-up",
        requests_per_second=round(result.inputs / seconds, 1),
        valid_uploads=tally.valid_sent,
        valid_answered_200=len(tally.latencies),
        share_503=round(tally.statuses["503"] / max(result.inputs, 1), 3),
        latency_200_p50_s=round(statistics.median(latencies), 3),
        latency_200_p99_s=round(latencies[int(0.99 * (len(latencies) - 1))], 3),
        health_probes=len(monitor.health_seconds),
        health_failures=monitor.health_failures,
        health_max_s=round(health[-1], 3),
        rss_baseline_mb=round(baseline, 1),
        rss_max_mb=round(max((mb for _, mb in monitor.rss), default=0.0), 1),
        rss_end_mb=round(end_mb, 1),
        rss_growth_after_warm_up=f"{growth:+.1%}",
        rss_every_10_s=_every_ten_seconds(monitor.rss),
    )
    if growth > tolerance:
        result.fail(f"RSS grew {growth:.1%} after the warm-up (> {tolerance:.0%}): a leak?")
    if monitor.health_failures:
        result.fail(f"/health failed {monitor.health_failures} times under load")
    if not tally.latencies:
        result.fail("no valid upload was answered with a mask")


def _every_ten_seconds(samples: list[tuple[float, float]]) -> list[int]:
    """The first RSS sample at or after 0, 10, 20... seconds, in MiB."""
    picked: list[int] = []
    for seconds, mb in samples:
        if seconds >= 10 * len(picked):
            picked.append(round(mb))
    return picked
