"""Starting the service: settings, a missing or corrupt model, and what it imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from harness import REPO_ROOT
from harness.server import service_environment
from service.app import create_app, load_segmenter
from service.config import DEFAULT_MODEL_PATH, Settings, SettingsError

pytest_plugins = ["tests.service_fixtures"]
pytestmark = pytest.mark.slow  # starts processes


def start(timeout: float = 60.0, **environment: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m service` where it is expected to stop at start."""
    return subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=REPO_ROOT,
        env=service_environment(**environment),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_python(code: str, **environment: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter, as the service's own process would start."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO_ROOT,
        env=service_environment(**environment),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_settings_defaults() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.model_path == DEFAULT_MODEL_PATH == REPO_ROOT / "models" / "segmenter.onnx"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert (settings.max_body_bytes, settings.max_image_pixels) == (10_000_000, 25_000_000)
    assert settings.ort_providers is None and settings.inference_threads == 0
    assert settings.cors_origins == () and settings.log_level == "info"


def test_settings_from_environment() -> None:
    settings = Settings.from_env(
        {
            "MODEL_PATH": "/models/m.onnx",
            "HOST": "0.0.0.0",
            "PORT": "5000",
            "MAX_BODY_BYTES": "1_000_000",
            "MAX_IMAGE_PIXELS": "4000000",
            "ORT_PROVIDERS": " CPUExecutionProvider ",
            "INFERENCE_THREADS": "2",
            "INFERENCE_SESSIONS": "2",
            "MAX_DECODES": "1",
            "MAX_QUEUE": "4",
            "CORS_ORIGINS": "https://a.example, http://localhost:3000",
            "LOG_LEVEL": "WARNING",
            "MODEL_REGISTRY_VERSION": " v1.2.3 ",
        }
    )
    assert settings == Settings(
        model_path=Path("/models/m.onnx"),
        host="0.0.0.0",
        port=5000,
        max_body_bytes=1_000_000,
        max_image_pixels=4_000_000,
        ort_providers=("CPUExecutionProvider",),
        inference_threads=2,
        inference_sessions=2,
        max_decodes=1,
        max_queue=4,
        cors_origins=("https://a.example", "http://localhost:3000"),
        log_level="warning",
        model_registry_version="v1.2.3",
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "http"),
        ("PORT", "70000"),
        ("MAX_BODY_BYTES", "10MB"),
        ("MAX_IMAGE_PIXELS", "0"),
        ("INFERENCE_THREADS", "-1"),
        ("INFERENCE_SESSIONS", "0"),
        ("INFERENCE_SESSIONS", "17"),
        ("MAX_DECODES", "-1"),
        ("MAX_QUEUE", "0"),
        ("ORT_PROVIDERS", "TurboExecutionProvider"),
        ("CORS_ORIGINS", "example.com"),
        ("CORS_ORIGINS", "https://example.com/app"),
        ("LOG_LEVEL", "loud"),
        ("MODEL_REGISTRY_VERSION", "1.2.3"),
        ("MODEL_REGISTRY_VERSION", "segmenter@v1.2.3"),
    ],
)
def test_bad_setting_is_refused_in_one_sentence(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name} .*{value}") as caught:
        Settings.from_env({name: value})
    assert "\n" not in str(caught.value)


def test_bad_setting_stops_the_process_at_start() -> None:
    result = start(MAX_QUEUE="many")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: MAX_QUEUE must be a whole number of at least 1, got 'many'."
    ]


def test_missing_model_stops_the_process_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.onnx"
    result = start(MODEL_PATH=str(missing))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: Model file {missing} does not exist; set MODEL_PATH to an exported .onnx file."
    ]


def test_corrupt_model_stops_the_process_with_one_line(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"this is not a protobuf" * 10)
    result = start(MODEL_PATH=str(corrupt))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"error: Model file {corrupt} is not a loadable ONNX model")


def test_entry_point_gives_opencv_the_pixel_limit(model_path: Path) -> None:
    result = run_python(
        """
        import uvicorn
        import service.__main__ as entry_point

        uvicorn.run = lambda app, **options: None  # everything but serving
        assert entry_point.main() == 0

        # OpenCV itself now refuses a 20 x 20 image, over twice the limit of 100 pixels
        # (it reads the limit when cv2 is first imported), and the service answers 400.
        import cv2
        import numpy as np
        from service.imaging import ImageError, ImageHeader, decode_gray

        at_limit = cv2.imencode(".png", np.zeros((10, 10), np.uint8))[1]
        assert cv2.imdecode(at_limit, cv2.IMREAD_GRAYSCALE) is not None
        png = cv2.imencode(".png", np.zeros((20, 20), np.uint8))[1]
        try:
            cv2.imdecode(png, cv2.IMREAD_GRAYSCALE)
            raise AssertionError("OpenCV decoded an image past MAX_IMAGE_PIXELS")
        except cv2.error:
            pass
        try:
            decode_gray(png.tobytes(), ImageHeader("PNG", 20, 20))
            raise AssertionError("decode_gray returned an image past MAX_IMAGE_PIXELS")
        except ImageError as error:
            assert error.status_code == 400, error.status_code
        """,
        MODEL_PATH=str(model_path),
        MAX_IMAGE_PIXELS="100",
    )
    assert result.returncode == 0, result.stderr


def test_serving_imports_neither_torch_nor_the_pipeline(model_path: Path) -> None:
    result = run_python(
        """
        import sys
        import cv2
        import numpy as np
        from starlette.testclient import TestClient
        from service.app import create_app, load_segmenter
        from service.config import Settings

        settings = Settings.from_env()
        with TestClient(create_app(settings, load_segmenter(settings))) as client:
            png = cv2.imencode(".png", np.zeros((30, 40), np.uint8))[1].tobytes()
            answer = client.post("/segment?format=json", files={"image": ("t.png", png)})
            assert answer.status_code == 200 and answer.json()["width"] == 40, answer.text
        loaded = {"torch", "fastai", "training", "export", "batch", "ray"} & {
            name.split(".")[0] for name in sys.modules
        }
        assert not loaded, f"serving imported {sorted(loaded)}"
        """,
        MODEL_PATH=str(model_path),
    )
    assert result.returncode == 0, result.stderr


def test_ready_is_503_until_the_warm_up_has_run(model_path: Path) -> None:
    settings = Settings.from_env({"MODEL_PATH": str(model_path)})
    client = TestClient(create_app(settings, load_segmenter(settings)))
    # Outside `with`, TestClient has not run the lifespan, which warms the model up.
    assert client.get("/ready").status_code == 503
    assert client.get("/health").status_code == 200
    with client:
        assert client.get("/ready").json() == {"status": "ready"}


@pytest.mark.parametrize(("variable", "reported"), [("v1.4.0", "v1.4.0"), ("", None)])
def test_info_reports_the_registry_version(
    model_path: Path, variable: str, reported: str | None
) -> None:
    # An image built without a version (docker build with no build-arg) sets it empty.
    settings = Settings.from_env(
        {"MODEL_PATH": str(model_path), "MODEL_REGISTRY_VERSION": variable}
    )
    with TestClient(create_app(settings, load_segmenter(settings))) as client:
        assert client.get("/info").json()["model"]["registry_version"] == reported


def test_cors_only_for_configured_origins(model_path: Path) -> None:
    settings = Settings.from_env(
        {"MODEL_PATH": str(model_path), "CORS_ORIGINS": "https://qa.example"}
    )
    with TestClient(create_app(settings, load_segmenter(settings))) as client:
        preflight = client.options(
            "/segment",
            headers={
                "Origin": "https://qa.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] == "https://qa.example"
        assert "access-control-allow-credentials" not in preflight.headers
        other = client.get("/health", headers={"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in other.headers
