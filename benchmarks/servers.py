"""Server subprocesses on 127.0.0.1: start one and time its cold start.

Cold start is timed from just before the process is spawned to the first 200 answer to
POST /segment with a real photo: interpreter start, imports, model load, warm-up, socket
bind and the first inference all count, as they do when a platform starts a container.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.http_load import Upload, post_once
from harness.server import Server, free_port, launch


@dataclass(frozen=True)
class ServerSpec:
    """How to start one setup: the module to run with `python -m` and its settings."""

    name: str
    module: str
    args: Sequence[str] = ()  # "{port}" in one stands for the port it must listen on
    env: Mapping[str, str] | None = None
    python: str = sys.executable  # the serving venv's interpreter runs what ships


@contextmanager
def launched(
    spec: ServerSpec, upload: Upload, startup_timeout: float
) -> Iterator[tuple[Server, float]]:
    """The server started and answering /segment, with its cold start in seconds; stopped
    with SIGTERM afterwards.
    """
    port = free_port()
    with tempfile.TemporaryDirectory(prefix=f"bench-{spec.name}-") as scratch:
        server = launch(
            Path(scratch) / "server.log",
            args=("-m", spec.module, *(arg.format(port=port) for arg in spec.args)),
            python=spec.python,
            port=port,
            **(spec.env or {}),
        )
        try:
            yield server, _first_segment(server, upload, startup_timeout)
        finally:
            server.stop()


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
