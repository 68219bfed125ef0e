"""Slow clients: connections that send nothing, or trickle headers or body a byte at a time.

uvicorn on its own keeps every one of them open forever (measured before the fix: a
silent connection, headers trickled, a body trickled were all still open after minutes).
The service now closes a connection whose headers are not complete HEADER_TIMEOUT
seconds after it opened or after its last answer, and answers 408 to a body that has not
arrived BODY_TIMEOUT seconds after the headers. Meanwhile a normal client must be served.
"""

from __future__ import annotations

import selectors
import socket
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx

from harness.server import launch, wait_ready
from reliability import corpus
from reliability.options import Options
from reliability.report import CheckResult
from reliability.server_log import record_shutdown_problems

TRICKLING_CLIENTS = 5
TRICKLE_INTERVAL = 0.2  # seconds between bytes
NORMAL_MAX_SECONDS = 5.0  # a normal request must still be answered within this


@dataclass(frozen=True)
class Timeouts:
    header: float
    body: float
    keep_alive: float

    @property
    def slack(self) -> float:
        """How late a cut may come on a busy 2-core machine."""
        return 1.5 + 0.1 * max(self.header, self.body)


def run(options: Options) -> CheckResult:
    result = CheckResult("slow_clients")
    started = time.monotonic()
    timeouts = _timeouts(options)
    settings = {}
    if options.budget.header_timeout is not None:
        settings["HEADER_TIMEOUT"] = str(options.budget.header_timeout)
    if options.budget.body_timeout is not None:
        settings["BODY_TIMEOUT"] = str(options.budget.body_timeout)
    log_path = options.out_dir / "logs" / "slow_clients.log"
    server = launch(log_path, MODEL_PATH=str(options.model_path), **settings)
    photo = corpus.seed_samples(options.data_dir, 1, options.seed)[0].data
    cuts = _Cuts()
    normal: list[tuple[str, float]] = []
    try:
        wait_ready(server)
        result.rss_before_mb = server.rss_mb()
        limit = max(timeouts.header, timeouts.body, timeouts.keep_alive) + 2 * timeouts.slack
        port = server.port
        scenarios = [
            threading.Thread(
                target=_silent, args=(port, options.budget.silent_connections, limit, cuts)
            ),
            *(
                threading.Thread(target=_trickled_headers, args=(port, limit, cuts))
                for _ in range(TRICKLING_CLIENTS)
            ),
            *(
                threading.Thread(target=_trickled_body, args=(port, limit, cuts))
                for _ in range(TRICKLING_CLIENTS)
            ),
            threading.Thread(target=_partial_after_answer, args=(port, photo, limit, cuts)),
            threading.Thread(target=_idle_after_answer, args=(port, photo, limit, cuts)),
        ]
        stop = threading.Event()
        served = threading.Thread(
            target=_normal_client, args=(server.base_url, photo, stop, normal)
        )
        for thread in [*scenarios, served]:
            thread.start()
        for thread in scenarios:
            thread.join(limit + 30)
        stop.set()
        served.join(60)
        result.rss_after_mb = server.rss_mb()
        if not server.healthy():
            result.fail("the server was not alive at the end")
    finally:
        exit_code = server.stop()
    _judge(result, timeouts, cuts, normal)
    record_shutdown_problems(result, server, exit_code)
    result.seconds = time.monotonic() - started
    return result


@dataclass
class _Cuts:
    """Seconds until the server cut each slow connection (None: it never did)."""

    by_scenario: dict[str, list[float | None]] = field(default_factory=dict)
    answers: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, scenario: str, seconds: float | None, answer: bytes) -> None:
        status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "closed"
        with self.lock:
            self.by_scenario.setdefault(scenario, []).append(seconds)
            self.answers[f"{scenario}: {status}"] += 1


def _timeouts(options: Options) -> Timeouts:
    from service.config import Settings  # the defaults, as deployed

    defaults = Settings()
    return Timeouts(
        header=options.budget.header_timeout or defaults.header_timeout,
        body=options.budget.body_timeout or defaults.body_timeout,
        keep_alive=defaults.keep_alive_timeout,
    )


def _judge(
    result: CheckResult, timeouts: Timeouts, cuts: _Cuts, normal: list[tuple[str, float]]
) -> None:
    expected = {
        "silent": timeouts.header,
        "trickled headers": timeouts.header,
        "trickled body": timeouts.body,
        "partial headers after an answer": timeouts.header,
        "idle after an answer": min(timeouts.keep_alive, timeouts.header),
    }
    for scenario, seconds in cuts.by_scenario.items():
        never = sum(s is None for s in seconds)
        done = [s for s in seconds if s is not None]
        result.inputs += len(seconds)
        result.figures[f"{scenario}: cut after (s)"] = (
            f"{min(done):.2f}-{max(done):.2f} (n={len(seconds)})" if done else "never"
        )
        if never:
            result.fail(f"{never} of {len(seconds)} '{scenario}' connections were never cut off")
        late = [s for s in done if s > expected[scenario] + timeouts.slack]
        early = [s for s in done if s < expected[scenario] - 0.2]
        if late:
            result.fail(f"'{scenario}' cut after {max(late):.1f} s, not ~{expected[scenario]} s")
        if early:
            result.fail(f"'{scenario}' cut after {min(early):.1f} s, before {expected[scenario]} s")
    result.statuses.update(cuts.answers)
    statuses = Counter(status for status, _ in normal)
    latencies = sorted(seconds for status, seconds in normal if status == "200") or [0.0]
    result.statuses.update({f"normal client: {s}": n for s, n in statuses.items()})
    result.figures.update(
        timeouts=f"header {timeouts.header} s, body {timeouts.body} s, "
        f"keep-alive {timeouts.keep_alive} s",
        normal_requests=len(normal),
        normal_latency_p50_s=round(statistics.median(latencies), 3),
        normal_latency_max_s=round(latencies[-1], 3),
    )
    result.figures["key"] = (
        f"{result.inputs} slow connections cut; normal client {statuses['200']}/{len(normal)} "
        f"served, max {latencies[-1]:.2f} s"
    )
    if not normal or statuses["200"] != len(normal):
        result.fail(f"the normal client got {dict(statuses)} while slow clients were connected")
    if latencies[-1] > NORMAL_MAX_SECONDS:
        result.fail(f"a normal request took {latencies[-1]:.1f} s while slow clients waited")


def _silent(port: int, count: int, limit: float, cuts: _Cuts) -> None:
    """`count` connections that never send a byte, watched together."""
    watcher = selectors.DefaultSelector()
    opened = time.monotonic()
    for _ in range(count):
        connection = socket.create_connection(("127.0.0.1", port), timeout=5)
        connection.setblocking(False)
        watcher.register(connection, selectors.EVENT_READ)
    deadline = opened + limit
    while watcher.get_map() and (left := deadline - time.monotonic()) > 0:
        for key, _ in watcher.select(timeout=min(left, 0.5)):
            connection = key.fileobj
            assert isinstance(connection, socket.socket)
            answer = _read_until_closed(connection)
            if answer is not None:
                watcher.unregister(connection)
                connection.close()
                cuts.add("silent", time.monotonic() - opened, answer)
    for key in list(watcher.get_map().values()):
        cuts.add("silent", None, b"")
        key.fileobj.close()  # type: ignore[union-attr]


def _trickled_headers(port: int, limit: float, cuts: _Cuts) -> None:
    head = b"POST /segment HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 10_000
    _trickle("trickled headers", port, b"", _bytes(head), limit, cuts)


def _trickled_body(port: int, limit: float, cuts: _Cuts) -> None:
    head = (
        b"POST /segment HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
        b"Content-Length: 100000\r\n\r\n"
    )
    _trickle("trickled body", port, head, _bytes(b"\xff" * 100_000), limit, cuts)


def _partial_after_answer(port: int, photo: bytes, limit: float, cuts: _Cuts) -> None:
    """A full request, its answer, then half the next request's headers: a stalled client."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        _exchange(connection, photo)
        answered = time.monotonic()
        connection.sendall(b"POST /segment HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        cuts.add("partial headers after an answer", *_wait_cut(connection, answered, limit))


def _idle_after_answer(port: int, photo: bytes, limit: float, cuts: _Cuts) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        _exchange(connection, photo)
        cuts.add("idle after an answer", *_wait_cut(connection, time.monotonic(), limit))


def _trickle(
    scenario: str, port: int, head: bytes, pieces: Iterator[bytes], limit: float, cuts: _Cuts
) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(head)
        opened = time.monotonic()
        connection.settimeout(TRICKLE_INTERVAL)
        while time.monotonic() - opened < limit:
            try:
                connection.sendall(next(pieces))
            except OSError:  # the server closed: read what it said
                cuts.add(scenario, time.monotonic() - opened, _read_rest(connection))
                return
            answer = _read_until_closed(connection, wait=TRICKLE_INTERVAL)
            if answer is not None:
                cuts.add(scenario, time.monotonic() - opened, answer)
                return
        cuts.add(scenario, None, b"")


def _wait_cut(connection: socket.socket, since: float, limit: float) -> tuple[float | None, bytes]:
    connection.settimeout(0.1)
    while time.monotonic() - since < limit:
        answer = _read_until_closed(connection, wait=0.1)
        if answer is not None:
            return time.monotonic() - since, answer
    return None, b""


def _read_until_closed(connection: socket.socket, wait: float = 0.0) -> bytes | None:
    """What the server sent before closing, or None while the connection stays open."""
    received = b""
    connection.settimeout(wait or 0.01)
    try:
        while chunk := connection.recv(65_536):
            received += chunk
            connection.settimeout(0.5)  # it is talking: read its whole answer
    except TimeoutError:
        return None if not received else received + (_read_rest(connection) or b"")
    except OSError:
        pass  # reset: closed
    return received


def _read_rest(connection: socket.socket) -> bytes:
    received = b""
    connection.settimeout(0.5)
    try:
        while chunk := connection.recv(65_536):
            received += chunk
    except OSError:
        pass
    return received


def _exchange(connection: socket.socket, photo: bytes) -> None:
    """One complete request and its whole answer on a kept-alive connection."""
    connection.sendall(
        b"POST /segment HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
        + f"Content-Length: {len(photo)}\r\n\r\n".encode()
        + photo
    )
    connection.settimeout(30)
    received = b""
    while b"\r\n\r\n" not in received:
        received += connection.recv(65_536)
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += connection.recv(65_536)


def _bytes(data: bytes) -> Iterator[bytes]:
    return (data[i : i + 1] for i in range(len(data)))


def _normal_client(
    base_url: str, photo: bytes, stop: threading.Event, record: list[tuple[str, float]]
) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        while not stop.is_set():
            began = time.monotonic()
            try:
                status = str(
                    client.post(
                        "/segment", content=photo, headers={"Content-Type": "image/jpeg"}
                    ).status_code
                )
            except httpx.HTTPError as error:
                status = f"error:{type(error).__name__}"
            record.append((status, time.monotonic() - began))
            stop.wait(0.2)
