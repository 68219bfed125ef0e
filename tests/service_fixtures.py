"""Fixtures shared by the service tests, which load this module with `pytest_plugins`.

The model is `models/segmenter.onnx` once the pipeline has produced it, else a stand-in
that follows the same contract, so the same tests hold for the real model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from harness import REPO_ROOT
from harness.server import Server, serving
from harness.stand_in_model import build_stand_in_model

REAL_MODEL = REPO_ROOT / "models" / "segmenter.onnx"


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if REAL_MODEL.is_file():
        return REAL_MODEL
    return build_stand_in_model(tmp_path_factory.mktemp("model") / "stand_in.onnx")


@pytest.fixture(scope="session")
def tile_paths(shared_data_dir: Path) -> list[Path]:
    return sorted(shared_data_dir.glob("MT_*/Imgs/*.jpg"))


@pytest.fixture(scope="session")
def tile_jpeg(tile_paths: list[Path]) -> bytes:
    """A real photo with a defect, as the camera wrote it."""
    return next(path for path in tile_paths if "MT_Blowhole" in str(path)).read_bytes()


@pytest.fixture(scope="session")
def tile(tile_jpeg: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(tile_jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)


@pytest.fixture(scope="session")
def server(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    # Room in the queue for the 24 simultaneous clients of the concurrency test.
    with serving(log_path, MODEL_PATH=str(model_path), MAX_QUEUE="32") as running:
        yield running
        exit_code = running.stop()
        log = running.log()
    assert exit_code == 0, log
    assert "Traceback" not in log, f"the server failed a request (a 500 is a bug):\n{log}"


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30.0) as http_client:
        yield http_client
