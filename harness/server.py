"""A server as a real subprocess on 127.0.0.1: `python -m service` unless told otherwise.

Tests, benchmarks and the reliability checks all start the service this way, so each of
them exercises what a container runs: the entry point, configured by its environment.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness import REPO_ROOT
from harness.process import MIB, rss_bytes
from service.config import ENVIRONMENT_VARIABLES

SERVICE_ARGS = ("-m", "service")


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    started_at: float  # time.perf_counter() just before the process was spawned

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def rss_mb(self) -> float:
        """Resident memory of the server process, in MiB."""
        return rss_bytes(self.pid) / MIB

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def healthy(self, timeout: float = 5.0) -> bool:
        """Whether the process runs and answers GET /health with 200."""
        return self.running() and get_status(self.port, "/health", timeout) == 200

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, as a platform sends it; SIGKILL if it does not end in `timeout` s."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.returncode

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a crashed host would."""
        if self.running():
            self.process.kill()
        self.process.wait(10)


def launch(
    log_path: Path,
    *,
    args: Sequence[str] = SERVICE_ARGS,
    python: str = sys.executable,
    cwd: Path = REPO_ROOT,
    port: int | None = None,
    **settings: str,
) -> Server:
    """Start `python *args` on 127.0.0.1 (not yet ready); `settings` are its environment
    variables, on top of this environment without the service's own.
    """
    port = port or free_port()
    environment = service_environment(HOST="127.0.0.1", PORT=str(port), **settings)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started_at = time.perf_counter()
    # A file, not a pipe: a full pipe would block a chatty server mid-run.
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [python, *args], cwd=cwd, env=environment, stdout=log_file, stderr=log_file
        )
    return Server(process, port, log_path, started_at)


def wait_ready(server: Server, timeout: float = 60.0) -> float:
    """Seconds from the launch until GET /ready answered 200; raises if it never does."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if not server.running():
            raise RuntimeError(f"the server exited at start:\n{server.log()[-3000:]}")
        if get_status(server.port, "/ready", timeout=1.0) == 200:
            return time.perf_counter() - server.started_at
        time.sleep(0.01)  # fine-grained: the restart check measures this
    server.kill()
    raise RuntimeError(f"the server was not ready within {timeout} s:\n{server.log()[-3000:]}")


@contextmanager
def serving(log_path: Path, **settings: str) -> Iterator[Server]:
    """A ready service for the block, stopped with SIGTERM afterwards."""
    server = launch(log_path, **settings)
    try:
        wait_ready(server)
        yield server
    finally:
        server.stop()


def service_environment(**overrides: str) -> dict[str, str]:
    """This environment without the service's variables, plus `overrides`."""
    environment = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT_VARIABLES}
    # Requests go to 127.0.0.1 only; a proxy from the environment must not see them.
    environment.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    return {**environment, "LOG_LEVEL": "warning", **overrides}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_status(port: int, path: str, timeout: float) -> int | None:
    """The status of GET `path`, or None if the server does not answer."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()
