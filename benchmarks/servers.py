"""Server subprocesses on 127.0.0.1: start one, time its cold start, watch its memory.

Cold start is timed from just before the process is spawned to the first 200 answer to
POST /segment with a real photo: interpreter start, imports, model load, warm-up, socket
bind and the first inference all count, as they do when a platform starts a container.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.http_load import Upload, post_once
from harness.server import REPO_ROOT, Server, launch


@dataclass(frozen=True)
class ServerSpec:
    """How to start one setup: the module to run with `python -m` and its settings."""

    name: str
    module: str
    args: Sequence[str] = ()
    env: Mapping[str, str] | None = None
    cwd: Path = REPO_ROOT  # another checkout runs its own `service` package
    python: str = sys.executable  # the serving venv's interpreter runs what ships


@contextmanager
def launched(
    spec: ServerSpec, upload: Upload, startup_timeout: float
) -> Iterator[tuple[Server, float]]:
    """The server started and answering /segment, with its cold start in seconds; stopped
    with SIGTERM afterwards.
    """
    with tempfile.TemporaryDirectory(prefix=f"bench-{spec.name}-") as scratch:
        server = launch(
            Path(scratch) / "server.log",
            args=("-m", spec.module, *spec.args),
            python=spec.python,
            cwd=spec.cwd,
            **(spec.env or {}),
        )
        try:
            yield server, _first_segment(server, upload, startup_timeout)
        finally:
            server.stop()


def peak_rss_mb(pid: int) -> float:
    """The kernel's high-water mark of the process's resident memory (VmHWM), in MB."""
    return _status_kb(pid, "VmHWM") * 1024 / 1e6


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # utime and stime are fields 14 and 15 of stat(5); [0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmRSS") * 1024 / 1e6


class RssSampler:
    """Samples a process's resident memory in a thread while a load runs."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_mb = max(self.peak_mb, rss_mb(self.pid))
            except (OSError, ValueError):
                return  # the process has gone
            self._stop.wait(self.interval)


def _first_segment(server: Server, upload: Upload, timeout: float) -> float:
    deadline = server.started_at + timeout
    while time.perf_counter() < deadline:
        if not server.running():
            code = server.process.returncode
            raise RuntimeError(f"the server exited with {code} at start:\n{server.log()}")
        try:
            remaining = max(0.1, deadline - time.perf_counter())
            status, body = post_once(server.port, upload, timeout=remaining)
        except OSError:  # not listening yet
            time.sleep(0.005)
            continue
        if status == 200:
            return time.perf_counter() - server.started_at
        raise RuntimeError(f"the first /segment answered {status}: {body[:200]!r}")
    raise RuntimeError(f"no 200 from /segment within {timeout} s")


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise ValueError(f"/proc/{pid}/status has no {field}")
