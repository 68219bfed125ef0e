"""The HTTP API through a real uvicorn process: each route, format, answer and mistake."""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from harness import REPO_ROOT
from harness.server import Server
from service.segmenter import Segmenter
from tests.raw_http import raw_exchange

pytest_plugins = ["tests.service_fixtures"]
pytestmark = pytest.mark.slow  # a real server

ImageFactory = Callable[[np.ndarray], bytes]


def encode(extension: str, image: np.ndarray, params: Iterable[int] = ()) -> bytes:
    ok, encoded = cv2.imencode(extension, image, list(params))
    assert ok, f"OpenCV could not write {extension}"
    return encoded.tobytes()


def decode(body: bytes, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(body, np.uint8), flags)
    assert image is not None, "the answer is not a picture"
    return image


def post_raw(
    client: httpx.Client, data: bytes, content_type: str = "application/octet-stream", **kwargs
) -> httpx.Response:
    return client.post("/segment", content=data, headers={"Content-Type": content_type}, **kwargs)


def assert_mask(response: httpx.Response, shape: tuple[int, int]) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    mask = decode(response.content)
    assert mask.shape == shape and mask.dtype == np.uint8  # one channel, the input's size
    assert set(np.unique(mask)) <= {0, 255}
    return mask


def assert_error(response: httpx.Response, status: int, fragment: str = "") -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    assert isinstance(message, str) and fragment in message
    assert "Traceback" not in message and str(REPO_ROOT) not in message
    return message


def declaring_size(png: bytes, width: int, height: int) -> bytes:
    """`png` with its IHDR rewritten to claim another size, checksum included."""
    forged = bytearray(png)
    struct.pack_into(">II", forged, 16, width, height)
    struct.pack_into(">I", forged, 29, zlib.crc32(bytes(forged[12:29])))
    return bytes(forged)


def test_health_ready_and_info(client: httpx.Client, model_path: Path) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready"}
    info = client.get("/info").json()
    model = info["model"]
    assert model["sha256"] == hashlib.sha256(model_path.read_bytes()).hexdigest()
    assert model["version"] and model["providers"]
    assert model["input_policy"]["stride"] > 0 and model["input_policy"]["max_side"] > 0
    assert 0 < model["threshold"] < 1 and model["min_area"] >= 0 and model["border"] >= 0
    assert isinstance(model["training_params"], dict)
    assert isinstance(model["test_metrics"], dict)
    assert info["limits"] == {
        "max_body_bytes": 10_000_000,
        "max_image_pixels": 25_000_000,
        "max_queue": 32,
    }
    assert str(REPO_ROOT) not in json.dumps(info)  # no server paths leak


def test_metrics_count_requests_by_route_method_and_status(
    client: httpx.Client, tile_jpeg: bytes
) -> None:
    post_raw(client, tile_jpeg, "image/jpeg")
    client.get("/no-such-route")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'http_requests_total{method="POST",route="/segment",status="200"}' in text
    assert 'http_requests_total{method="GET",route="unmatched",status="404"}' in text
    for name in (
        "http_request_duration_seconds_bucket",
        "inference_duration_seconds_count",
        "inferences_in_flight",
        "inference_queue_rejections_total",
    ):
        assert name in text


FORMATS: dict[str, ImageFactory] = {
    "jpeg": lambda tile: encode(".jpg", tile),
    "jpeg-progressive": lambda tile: encode(".jpg", tile, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
    "jpeg-colour": lambda tile: encode(".jpg", cv2.cvtColor(tile, cv2.COLOR_GRAY2BGR)),
    "png": lambda tile: encode(".png", tile),
    "png-colour": lambda tile: encode(".png", cv2.cvtColor(tile, cv2.COLOR_GRAY2BGR)),
    "png-alpha": lambda tile: encode(".png", cv2.cvtColor(tile, cv2.COLOR_GRAY2BGRA)),
    "png-16-bit": lambda tile: encode(".png", tile.astype(np.uint16) * 257),
    "bmp": lambda tile: encode(".bmp", tile),
    "bmp-colour": lambda tile: encode(".bmp", cv2.cvtColor(tile, cv2.COLOR_GRAY2BGR)),
    "tiff": lambda tile: encode(".tiff", tile),
    "tiff-colour": lambda tile: encode(".tiff", cv2.cvtColor(tile, cv2.COLOR_GRAY2BGR)),
    "tiff-16-bit": lambda tile: encode(".tiff", tile.astype(np.uint16) * 257),
    "1x1": lambda tile: encode(".png", tile[:1, :1]),
    "1xN": lambda tile: encode(".png", tile[:1, :]),
    "Nx1": lambda tile: encode(".jpg", tile[:, :1]),
    "odd-size": lambda tile: encode(".bmp", tile[:37, :101]),
}


@pytest.mark.parametrize("kind", FORMATS)
def test_each_format_and_size_gets_a_mask_of_its_size(
    client: httpx.Client, tile: np.ndarray, kind: str
) -> None:
    data = FORMATS[kind](tile)
    expected = decode(data, cv2.IMREAD_GRAYSCALE).shape
    assert_mask(post_raw(client, data), expected)


def test_large_image_gets_a_mask_of_its_size(client: httpx.Client) -> None:
    height, width = 3000, 4000  # 12 megapixels, a smooth PNG well under the body limit
    large = (np.add.outer(np.arange(height) // 12, np.arange(width) // 16) % 256).astype(np.uint8)
    assert_mask(post_raw(client, encode(".png", large), "image/png"), (height, width))


def test_mask_is_what_the_segmenter_computes(
    client: httpx.Client, tile: np.ndarray, model_path: Path
) -> None:
    served = assert_mask(post_raw(client, encode(".png", tile), "image/png"), tile.shape)
    expected = Segmenter.from_onnx(model_path).segment(tile).mask
    # Thread counts may differ from the server's, which can move a borderline pixel.
    assert np.mean(served != expected) < 0.001


def test_multipart_and_raw_uploads_get_the_same_mask(
    client: httpx.Client, tile_jpeg: bytes, tile: np.ndarray
) -> None:
    raw = post_raw(client, tile_jpeg, "image/jpeg")
    as_file = client.post("/segment", files={"image": ("tile.jpg", tile_jpeg, "image/jpeg")})
    as_field = client.post("/segment", files={"image": (None, tile_jpeg)})  # no filename
    next_to_others = client.post(
        "/segment", data={"note": "x"}, files={"image": ("t.jpg", tile_jpeg, "image/jpeg")}
    )
    masks = [assert_mask(r, tile.shape) for r in (raw, as_file, as_field, next_to_others)]
    assert all(np.array_equal(masks[0], mask) for mask in masks)


def test_json_answer_describes_the_mask(client: httpx.Client, tile_jpeg: bytes) -> None:
    mask = assert_mask(post_raw(client, tile_jpeg, "image/jpeg"), decode(tile_jpeg, 0).shape)
    response = post_raw(client, tile_jpeg, "image/jpeg", params={"format": "json"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert (
        response.headers["vary"] == "Accept"
        and "inference;dur=" in response.headers["server-timing"]
    )
    answer = response.json()
    assert set(answer) == {
        "defective",
        "defect_fraction",
        "score",
        "decision_threshold",
        "threshold",
        "regions_threshold",
        "width",
        "height",
        "regions",
        "timings_ms",
        "model_version",
    }
    assert (answer["height"], answer["width"]) == mask.shape
    assert answer["defect_fraction"] == pytest.approx(np.count_nonzero(mask) / mask.size, abs=1e-6)
    # One rule: defective exactly when the score reaches the decision threshold, and then
    # with at least one region; a tile that passes has none.
    assert answer["defective"] == (answer["score"] >= answer["decision_threshold"])
    assert answer["defective"] == bool(answer["regions"])
    assert sum(region["area"] for region in answer["regions"]) == np.count_nonzero(mask)
    classes = client.get("/info").json()["model"]["classes"]
    for region in answer["regions"]:
        assert set(region) == {
            "x",
            "y",
            "width",
            "height",
            "area",
            "mean_probability",
            "class",
            "class_probabilities",
        }
        assert region["x"] + region["width"] <= answer["width"]
        assert region["y"] + region["height"] <= answer["height"]
        assert answer["regions_threshold"] <= region["mean_probability"] <= 1
        assert region["class"] in classes[1:]
        assert list(region["class_probabilities"]) == classes
        assert sum(region["class_probabilities"].values()) == pytest.approx(1, abs=1e-3)
    assert 0 <= answer["score"] <= 1
    assert set(answer["timings_ms"]) == {"decode", "inference", "postprocess", "total"}
    assert answer["timings_ms"]["total"] >= answer["timings_ms"]["inference"] > 0
    assert answer["model_version"] == client.get("/info").json()["model"]["version"]


def test_labels_answer_gives_each_pixel_its_regions_class(
    client: httpx.Client, tile: np.ndarray
) -> None:
    photo = tile.copy()
    photo[10:30, 10:40] = 5  # a black blot, found by the stand-in model and real ones
    data = encode(".png", photo)
    response = post_raw(client, data, params={"format": "labels"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    labels = decode(response.content, cv2.IMREAD_UNCHANGED)
    assert labels.shape == photo.shape and labels.dtype == np.uint8
    answer = post_raw(client, data, params={"format": "json"}).json()
    classes = client.get("/info").json()["model"]["classes"]
    assert classes[0] == "background"
    # Labels are 0 off the mask, and each region's pixels carry its class's index.
    mask = assert_mask(post_raw(client, data), photo.shape)
    np.testing.assert_array_equal(labels > 0, mask > 0)
    for region in answer["regions"]:
        box = labels[
            region["y"] : region["y"] + region["height"],
            region["x"] : region["x"] + region["width"],
        ]
        assert classes.index(region["class"]) in np.unique(box)


def test_overlay_is_a_colour_picture_of_the_input(client: httpx.Client, tile: np.ndarray) -> None:
    response = post_raw(client, encode(".png", tile), params={"format": "overlay"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert decode(response.content).shape == (*tile.shape, 3)


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        ("application/json", "application/json"),
        ("image/jpeg", "image/jpeg"),
        ("image/png", "image/png"),
        ("*/*", "image/png"),
        ("text/html, application/json;q=0.9, */*;q=0.8", "application/json"),
        ("image/png;q=0.5, image/jpeg", "image/jpeg"),
    ],
)
def test_accept_header_chooses_the_answer(
    client: httpx.Client, tile_jpeg: bytes, accept: str, content_type: str
) -> None:
    response = client.post(
        "/segment", content=tile_jpeg, headers={"Content-Type": "image/jpeg", "Accept": accept}
    )
    assert response.status_code == 200 and response.headers["content-type"] == content_type


def test_answer_formats_nobody_offers_are_refused(client: httpx.Client, tile_jpeg: bytes) -> None:
    assert_error(post_raw(client, tile_jpeg, params={"format": "gif"}), 400, "Unknown format")
    refused = client.post(
        "/segment", content=tile_jpeg, headers={"Content-Type": "image/jpeg", "Accept": "text/html"}
    )
    assert_error(refused, 406, "?format=")


MISTAKES: dict[str, tuple[Callable[[bytes], dict], int, str]] = {
    # name: (request arguments from a JPEG, expected status, part of the message)
    "empty body": (
        lambda jpeg: {"content": b"", "headers": {"Content-Type": "image/jpeg"}},
        400,
        "empty",
    ),
    "no image field": (
        lambda jpeg: {"files": {"file": ("t.jpg", jpeg)}},
        400,
        "no field named 'image'",
    ),
    "empty image field": (lambda jpeg: {"files": {"image": ("t.jpg", b"")}}, 400, "empty"),
    "garbage bytes": (
        lambda jpeg: {"content": b"\x00garbage" * 100, "headers": {"Content-Type": "image/png"}},
        415,
        "not a JPEG, PNG, BMP or TIFF",
    ),
    "truncated jpeg": (
        lambda jpeg: {"content": jpeg[: len(jpeg) // 2], "headers": {"Content-Type": "image/jpeg"}},
        400,
        "damaged or truncated",
    ),
    "text content type": (
        lambda jpeg: {"content": jpeg, "headers": {"Content-Type": "text/plain"}},
        415,
        "not text/plain",
    ),
    "no content type": (lambda jpeg: {"content": jpeg}, 415, "no Content-Type"),
    "multipart without boundary": (
        lambda jpeg: {"content": jpeg, "headers": {"Content-Type": "multipart/form-data"}},
        400,
        "boundary",
    ),
    "multipart cut short": (
        lambda jpeg: {
            "content": b'--b\r\nContent-Disposition: form-data; name="image"\r\n\r\n' + jpeg,
            "headers": {"Content-Type": "multipart/form-data; boundary=b"},
        },
        400,
        "closing boundary",
    ),
    "too many pixels": (
        lambda jpeg: {
            "content": declaring_size(encode(".png", np.zeros((8, 8), np.uint8)), 50_000, 50_000),
            "headers": {"Content-Type": "image/png"},
        },
        413,
        "50000 x 50000",
    ),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_client_mistakes_get_a_json_error(
    client: httpx.Client, tile_jpeg: bytes, mistake: str
) -> None:
    arguments, status, fragment = MISTAKES[mistake]
    assert_error(client.post("/segment", **arguments(tile_jpeg)), status, fragment)


def test_wrong_method_and_unknown_route(client: httpx.Client) -> None:
    wrong = client.get("/segment")
    assert_error(wrong, 405, "use POST")
    assert wrong.headers["allow"] == "POST"
    assert_error(client.post("/health"), 405, "GET")
    assert_error(client.get("/no/such/route"), 404, "POST /segment")


def test_declared_length_over_the_limit_is_refused_before_the_body(server: Server) -> None:
    head = (
        b"POST /segment HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
        b"Content-Length: 10000001\r\n\r\n"
    )
    response, body, sent = raw_exchange(server, head)
    assert response.status == 413 and sent == 0  # answered on the headers alone
    assert "10000000 bytes" in json.loads(body)["error"]


def test_chunked_body_over_the_limit_is_refused_while_streaming(server: Server) -> None:
    head = (
        b"POST /segment HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    megabyte = b"\xff" * 1_000_000
    chunks = (b"%x\r\n%s\r\n" % (len(megabyte), megabyte) for _ in range(30))
    response, body, sent = raw_exchange(server, head, chunks)
    assert response.status == 413
    assert "error" in json.loads(body)
    assert sent < 20_000_000  # the server answered long before the 30 MB were sent


def test_no_cors_headers_unless_configured(client: httpx.Client) -> None:
    response = client.get("/health", headers={"Origin": "https://example.com"})
    assert "access-control-allow-origin" not in response.headers
