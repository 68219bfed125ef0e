"""Run the service as a real `python -m service` subprocess on a free loopback port."""

from __future__ import annotations

import http.client
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from service.config import ENVIRONMENT_VARIABLES

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    base_url: str
    port: int
    log_file: IO[bytes]

    def log(self) -> str:
        """Everything the server printed so far."""
        self.log_file.flush()
        self.log_file.seek(0)
        return self.log_file.read().decode(errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, as a platform would send; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


def service_environment(**overrides: str) -> dict[str, str]:
    """This environment without the service's variables that a developer may have set."""
    environment = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT_VARIABLES}
    return {**environment, "LOG_LEVEL": "warning", **overrides}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_server(
    model_path: Path, startup_timeout: float = 30.0, **settings: str
) -> Iterator[RunningServer]:
    """A ready server (its /ready answered 200) for the block; stopped afterwards."""
    port = free_port()
    environment = service_environment(
        MODEL_PATH=str(model_path), HOST="127.0.0.1", PORT=str(port), **settings
    )
    # A file, not a pipe: a full pipe would block a chatty server mid-test.
    with tempfile.TemporaryFile() as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "service"],
            cwd=REPO_ROOT,
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        server = RunningServer(process, f"http://127.0.0.1:{port}", port, log_file)
        try:
            _wait_until_ready(server, startup_timeout)
            yield server
        finally:
            if process.poll() is None:
                server.stop()


def raw_exchange(
    server: RunningServer, head: bytes, chunks: Iterable[bytes] = (), timeout: float = 20.0
) -> tuple[http.client.HTTPResponse, bytes, int]:
    """Send `head`, then `chunks` until the server answers; returns answer, body, bytes sent.

    A raw socket shows what httpx hides: whether the server answers before the body ends.
    """
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as connection:
        connection.sendall(head)
        sent = 0
        for chunk in chunks:
            if select.select([connection], [], [], 0)[0]:
                break  # the server has answered
            connection.sendall(chunk)
            sent += len(chunk)
        response = http.client.HTTPResponse(connection)
        response.begin()
        return response, response.read(), sent


def _wait_until_ready(server: RunningServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"The server exited at start:\n{server.log()}")
        try:
            if httpx.get(f"{server.base_url}/ready", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"The server was not ready within {timeout} s:\n{server.log()}")
