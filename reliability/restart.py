"""Crash and restart: kill -9 the server under load, start it again on the same port.

The new process must answer /ready within 2 seconds of being started, and every request
sent after that must be served; only requests in flight at the kill may be lost. Quick
mode, which the test suite runs, reports the time without judging it: tests assert
behaviour, and a busy CI machine's start-up time says little about the service.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from harness.server import free_port, launch, wait_ready
from reliability import corpus
from reliability.options import Options
from reliability.report import CheckResult
from reliability.server_log import log_problems

READY_WITHIN_SECONDS = 2.0
LOAD_CLIENTS = 4
LOAD_BEFORE_KILL_SECONDS = 1.5


def run(options: Options) -> CheckResult:
    result = CheckResult("restart")
    started = time.monotonic()
    port = free_port()
    logs = options.out_dir / "logs"
    photo = corpus.seed_samples(options.data_dir, 1, options.seed)[0].data
    server = launch(logs / "restart-0.log", port=port, MODEL_PATH=str(options.model_path))
    ready_after: list[float] = []
    windows: list[tuple[float, float]] = []  # (kill, ready) of each restart
    load = _Load()
    try:
        wait_ready(server)
        result.rss_before_mb = server.rss_mb()
        clients = [
            threading.Thread(target=_send_load, args=(port, photo, load), daemon=True)
            for _ in range(LOAD_CLIENTS)
        ]
        for client in clients:
            client.start()
        for number in range(1, options.budget.restarts + 1):
            time.sleep(LOAD_BEFORE_KILL_SECONDS)
            killed_at = time.monotonic()
            server.kill()
            for line in log_problems(server.log()):
                result.fail(f"server log before kill {number}: {line}")
            server = launch(
                logs / f"restart-{number}.log", port=port, MODEL_PATH=str(options.model_path)
            )
            ready_after.append(wait_ready(server, timeout=30))
            windows.append((killed_at, time.monotonic()))
        time.sleep(LOAD_BEFORE_KILL_SECONDS)
        load.stop.set()
        for client in clients:
            client.join(60)
        result.rss_after_mb = server.rss_mb()
    finally:
        load.stop.set()
        exit_code = server.stop()
    for line in log_problems(server.log()):
        result.fail(f"server log after the last restart: {line}")
    if exit_code != 0:
        result.fail(f"the restarted server exited with {exit_code} on SIGTERM")
    _judge(result, ready_after, windows, load, judge_time=not options.quick)
    result.seconds = time.monotonic() - started
    return result


@dataclass
class _Load:
    """(start, end, status) of each request sent while servers come and go."""

    records: list[tuple[float, float, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _judge(
    result: CheckResult,
    ready_after: list[float],
    windows: list[tuple[float, float]],
    load: _Load,
    judge_time: bool,
) -> None:
    lost = 0
    statuses: Counter[str] = Counter()
    for began, ended, status in load.records:
        statuses[status] += 1
        if status in ("200", "503"):
            continue
        # A request that overlaps a kill-to-ready window may fail; any other may not.
        if any(began <= ready and ended >= killed for killed, ready in windows):
            lost += 1
        else:
            result.fail(f"a request outside any restart got {status}")
    result.inputs = len(load.records)
    result.statuses = statuses
    slowest = max(ready_after, default=float("nan"))
    result.figures.update(
        key=f"ready {slowest:.2f} s after restart (max of {len(ready_after)})",
        restarts=len(ready_after),
        ready_after_restart_s=[round(s, 3) for s in ready_after],
        ready_median_s=round(statistics.median(ready_after), 3) if ready_after else None,
        ready_max_s=round(slowest, 3),
        requests_failed_while_down=lost,
    )
    late = [s for s in ready_after if s > READY_WITHIN_SECONDS]
    if judge_time and late:
        result.fail(f"ready after {max(late):.2f} s (> {READY_WITHIN_SECONDS} s)")
    if statuses["200"] == 0:
        result.fail("no request was served")


def _send_load(port: int, photo: bytes, load: _Load) -> None:
    url = f"http://127.0.0.1:{port}/segment"
    with httpx.Client(timeout=10) as client:
        while not load.stop.is_set():
            began = time.monotonic()
            try:
                status = str(
                    client.post(
                        url, content=photo, headers={"Content-Type": "image/jpeg"}
                    ).status_code
                )
            except httpx.HTTPError as error:
                status = f"error:{type(error).__name__}"
                time.sleep(0.02)  # the server is down: do not spin
            with load.lock:
                load.records.append((began, time.monotonic(), status))
