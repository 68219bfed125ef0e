"""Load and lifecycle through real uvicorn processes: concurrency, back-pressure, SIGTERM."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from harness.server import Server, serving
from tests.raw_http import raw_exchange

pytest_plugins = ["tests.service_fixtures"]
pytestmark = pytest.mark.slow  # real servers


def decode(body: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)


def smooth_png(height: int, width: int) -> bytes:
    image = (np.add.outer(np.arange(height) // 8, np.arange(width) // 8) % 256).astype(np.uint8)
    return cv2.imencode(".png", image)[1].tobytes()


def post_all_at_once(base_url: str, uploads: list[bytes]) -> list[httpx.Response]:
    """One client thread per upload, released together by a barrier."""
    barrier = threading.Barrier(len(uploads))
    limits = httpx.Limits(max_connections=len(uploads))
    with httpx.Client(base_url=base_url, timeout=60.0, limits=limits) as client:

        def post(upload: bytes) -> httpx.Response:
            barrier.wait(timeout=10)
            return client.post("/segment", content=upload, headers={"Content-Type": "image/png"})

        with ThreadPoolExecutor(len(uploads)) as pool:
            return list(pool.map(post, uploads))


def inferences_in_flight(client: httpx.Client) -> float:
    match = re.search(r"^inferences_in_flight (\S+)$", client.get("/metrics").text, re.MULTILINE)
    assert match, "the in-flight gauge is missing"
    return float(match.group(1))


def test_24_clients_at_once_each_get_their_own_mask(server: Server, tile_paths: list[Path]) -> None:
    # Photos of different sizes from every class, so that answers mixed up between
    # requests would show as masks of the wrong size.
    paths = tile_paths[:: len(tile_paths) // 24][:24]
    photos = [cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) for path in paths]
    uploads = [cv2.imencode(".png", photo)[1].tobytes() for photo in photos]
    responses = post_all_at_once(server.base_url, uploads)
    for response, photo in zip(responses, photos, strict=True):
        assert response.status_code == 200, response.text
        assert decode(response.content).shape == photo.shape


def test_sessions_and_decode_gates_keep_each_answer_its_own(
    model_path: Path, tile_paths: list[Path], tmp_path: Path
) -> None:
    # Two sessions, one decode at a time: answers must be those a lone request gets.
    paths = tile_paths[:: len(tile_paths) // 12][:12]
    uploads = [path.read_bytes() for path in paths]
    settings = {"INFERENCE_SESSIONS": "2", "INFERENCE_THREADS": "1", "MAX_DECODES": "1"}
    with serving(tmp_path / "server.log", MODEL_PATH=str(model_path), **settings) as server:
        together = post_all_at_once(server.base_url, uploads)
        with httpx.Client(base_url=server.base_url, timeout=60.0) as client:
            alone = [
                client.post("/segment", content=upload, headers={"Content-Type": "image/jpeg"})
                for upload in uploads
            ]
    for at_once, by_itself in zip(together, alone, strict=True):
        assert at_once.status_code == by_itself.status_code == 200, at_once.text
        assert at_once.content == by_itself.content


def test_health_answers_while_inference_is_busy(server: Server) -> None:
    large = smooth_png(3000, 4000)
    with (
        httpx.Client(base_url=server.base_url, timeout=60.0) as client,
        ThreadPoolExecutor(3) as pool,
    ):
        busy = [
            pool.submit(
                client.post, "/segment", content=large, headers={"Content-Type": "image/png"}
            )
            for _ in range(3)
        ]
        deadline = time.monotonic() + 10
        while inferences_in_flight(client) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        health = client.get("/health")
        still_busy = inferences_in_flight(client) > 0
        assert all(future.result().status_code == 200 for future in busy)
    # Answered while the photos were still being segmented, not after them.
    assert health.status_code == 200 and still_busy


def test_full_queue_answers_503_with_retry_after(model_path: Path, tmp_path: Path) -> None:
    upload = smooth_png(1500, 2000)
    with serving(tmp_path / "server.log", MODEL_PATH=str(model_path), MAX_QUEUE="1") as server:
        responses: list[httpx.Response] = []
        for _ in range(3):  # bursts of 8, until one overflows the queue of 1
            responses += post_all_at_once(server.base_url, [upload] * 8)
            if any(response.status_code == 503 for response in responses):
                break
        metrics = httpx.get(f"{server.base_url}/metrics").text
    rejected = [response for response in responses if response.status_code == 503]
    served = [response for response in responses if response.status_code == 200]
    assert rejected and served and len(rejected) + len(served) == len(responses)
    for response in rejected:
        assert response.headers["retry-after"] == "1"
        assert "busy" in response.json()["error"]
    for response in served:
        assert decode(response.content).shape == (1500, 2000)
    assert f"inference_queue_rejections_total {len(rejected)}.0" in metrics


def test_sigterm_lets_the_request_in_flight_finish(
    model_path: Path, tile: np.ndarray, tmp_path: Path
) -> None:
    upload = cv2.imencode(".png", tile)[1].tobytes()
    head = (
        "POST /segment HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
        f"Content-Length: {len(upload)}\r\n\r\n"
    ).encode()
    with serving(tmp_path / "server.log", MODEL_PATH=str(model_path)) as server:

        def body_around_sigterm() -> Iterator[bytes]:
            yield upload[: len(upload) // 2]
            time.sleep(0.3)  # the server now holds the request's headers and half its body
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            with pytest.raises(ConnectionRefusedError):  # it no longer accepts connections
                socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
            yield upload[len(upload) // 2 :]

        response, body, _ = raw_exchange(server, head, body_around_sigterm())
        assert response.status == 200
        assert decode(body).shape == tile.shape
        assert server.process.wait(timeout=15) == 0, server.log()
        assert "Traceback" not in server.log()
