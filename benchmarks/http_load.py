"""A small HTTP/1.1 load client on asyncio that does not hide queueing delay.

Closed loop at a fixed concurrency: `concurrency` keep-alive connections, each sending
its next request as soon as it has read the previous answer, as that many busy camera
clients would. Each request is timed from when it was *due* (the instant its connection
became free, or the start) to the last byte of the answer, so any delay inside this
client before the request leaves counts as latency too, and that delay is reported on
its own ("client_delay"), with the client's CPU time per request. The server's queueing
is inside the measured latency: at concurrency 16 a request waits for the ones ahead.

The client speaks raw HTTP/1.1 over asyncio streams (uvloop when installed) rather than
through httpx: on a 2-core machine a heavy client steals CPU from the server it measures.
Every run is bounded by a request count and a time limit, and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import re
import time
from collections import Counter
from dataclasses import dataclass

from benchmarks.stats import summarise_ms

HOST = "127.0.0.1"
PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class Upload:
    """A ready-to-send POST /segment request with the photo as multipart field `image`."""

    body: bytes
    content_type: str

    def request_bytes(self, port: int, path: str = "/segment") -> bytes:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: image/png\r\n"
            f"Content-Type: {self.content_type}\r\nContent-Length: {len(self.body)}\r\n\r\n"
        )
        return head.encode("ascii") + self.body


def post_once(port: int, upload: Upload, timeout: float) -> tuple[int, bytes]:
    """One blocking POST /segment on a fresh connection; raises OSError when nobody listens."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request(
            "POST",
            "/segment",
            body=upload.body,
            headers={"Content-Type": upload.content_type, "Accept": "image/png"},
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def run_load(
    port: int,
    upload: Upload,
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    request_timeout: float = 60.0,
) -> dict[str, object]:
    """Closed-loop load at `concurrency`; stops issuing after `max_requests` or `max_seconds`.

    The connections are opened before the clock starts, so the figures are for steady
    keep-alive traffic; the server has answered at least one request before (its cold
    start), so no first-inference cost lands in them.
    """
    runner = _event_loop_runner()
    with runner:
        return runner.run(
            _load(port, upload, concurrency, max_requests, max_seconds, request_timeout)
        )


def _event_loop_runner() -> asyncio.Runner:
    try:
        import uvloop
    except ImportError:  # the serving requirements carry uvloop; any loop will do otherwise
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


async def _load(
    port: int,
    upload: Upload,
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    request_timeout: float,
) -> dict[str, object]:
    payload = upload.request_bytes(port)
    connections = [_Connection(port) for _ in range(concurrency)]
    state = _LoadState(max_requests)
    try:
        await asyncio.gather(*(c.connect() for c in connections))
        cpu_started = time.thread_time()  # this loop's thread only, not a sampler's
        started = time.perf_counter()
        deadline = started + max_seconds
        await asyncio.gather(
            *(_worker(c, payload, state, deadline, request_timeout) for c in connections)
        )
        cpu_seconds = time.thread_time() - cpu_started
    finally:
        for connection in connections:
            connection.close()
    elapsed = (state.last_done or time.perf_counter()) - started
    return {
        "concurrency": concurrency,
        "requests": state.issued,
        "ok": len(state.latencies),
        "errors": state.issued - len(state.latencies),
        "error_kinds": dict(state.errors),
        "seconds": round(elapsed, 3),
        "throughput_rps": round(len(state.latencies) / elapsed, 2) if elapsed > 0 else 0.0,
        "latency": summarise_ms(state.latencies, PERCENTILES),
        "client_delay": summarise_ms(state.client_delays, PERCENTILES),
        # The server's own account (its Server-Timing header), when it gives one: "total"
        # runs from its receiving the headers; the rest is HTTP, upload and this client.
        "server_timing": {
            name: summarise_ms(samples, PERCENTILES)
            for name, samples in state.server_timings.items()
        },
        "client_cpu_ms_per_request": round(1000 * cpu_seconds / max(1, state.issued), 3),
    }


@dataclass
class _LoadState:
    max_requests: int
    issued: int = 0
    last_done: float | None = None

    def __post_init__(self) -> None:
        self.latencies: list[float] = []
        self.client_delays: list[float] = []
        self.server_timings: dict[str, list[float]] = {}
        self.errors: Counter[str] = Counter()


async def _worker(
    connection: _Connection,
    payload: bytes,
    state: _LoadState,
    deadline: float,
    request_timeout: float,
) -> None:
    due = time.perf_counter()
    while state.issued < state.max_requests and due < deadline:
        state.issued += 1
        sent = time.perf_counter()
        try:
            status, server_timing = await connection.exchange(payload, request_timeout)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as error:
            connection.close()
            state.errors[type(error).__name__] += 1
            status, server_timing = None, {}
        done = time.perf_counter()
        if status == 200:
            state.latencies.append(done - due)
            state.client_delays.append(sent - due)
            for name, seconds in server_timing.items():
                state.server_timings.setdefault(name, []).append(seconds)
        elif status is not None:
            state.errors[f"HTTP {status}"] += 1
        state.last_done = done
        due = done


_CHUNK_SIZE = re.compile(rb"^[0-9a-fA-F]+")
_SERVER_TIMING = re.compile(rb"([a-z_]+);dur=([0-9.]+)")


class _Connection:
    """One keep-alive HTTP/1.1 connection, reopened after an error or `Connection: close`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def exchange(self, payload: bytes, timeout: float) -> tuple[int, dict[str, float]]:
        """Send `payload`, read the whole answer; returns the status and the durations in
        seconds that the server's Server-Timing header names, if it sends one."""
        try:
            return await self._exchange(payload, timeout)
        except BaseException:
            self.close()  # a half-read answer would corrupt the next one
            raise

    async def _exchange(self, payload: bytes, timeout: float) -> tuple[int, dict[str, float]]:
        async with asyncio.timeout(timeout):
            if self.writer is None:
                await self.connect()
            assert self.reader is not None and self.writer is not None
            self.writer.write(payload)
            head = await self.reader.readuntil(b"\r\n\r\n")
            status, headers = _parse_head(head)
            length = headers.get(b"content-length")
            if length is not None:
                await self.reader.readexactly(int(length))
            elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                await self._read_chunked()
            else:  # the body runs to the end of the connection
                await self.reader.read()
                self.close()
            if headers.get(b"connection", b"").lower() == b"close":
                self.close()
        timings = _SERVER_TIMING.findall(headers.get(b"server-timing", b""))
        return status, {name.decode(): float(ms) / 1000 for name, ms in timings}

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port, limit=2**20)

    async def _read_chunked(self) -> None:
        assert self.reader is not None
        while True:
            size_line = await self.reader.readuntil(b"\r\n")
            match = _CHUNK_SIZE.match(size_line)
            if match is None:
                raise ValueError("malformed chunk size")
            size = int(match.group(0), 16)
            await self.reader.readexactly(size + 2)  # the data and its CRLF
            if size == 0:
                return

    def close(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(RuntimeError):  # the loop may already be closing
                self.writer.close()
        self.reader = self.writer = None


def _parse_head(head: bytes) -> tuple[int, dict[bytes, bytes]]:
    status_line, *lines = head[:-4].split(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ValueError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers
