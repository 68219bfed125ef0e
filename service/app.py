"""The HTTP API: POST /segment, and GET /health, /ready, /info and /metrics.

A request to /segment passes cheap checks on the event loop first (answer format,
content type, body size, image header), so that a bad upload costs no queue slot. Only
then is it admitted to the bounded inference queue, and decoding, inference and
encoding run in worker threads, so /health and /metrics answer while a model runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from anyio import CancelScope, CapacityLimiter, Condition, fail_after, to_thread
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.config import Settings
from service.imaging import ImageError, decode_gray, encode_png, read_header, render_overlay
from service.segmenter import ModelError, Segmentation, Segmenter
from service.telemetry import Metrics, MetricsMiddleware

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

logger = logging.getLogger("service")

FORMATS = ("mask", "json", "overlay")


def load_segmenter(settings: Settings) -> Segmenter:
    """The model named by the settings; raises ModelError with one sentence if it is unusable."""
    if settings.model_sha256 is not None and settings.model_path.is_file():
        actual = _file_sha256(settings.model_path)
        if actual != settings.model_sha256:
            raise ModelError(
                f"Model file {settings.model_path} has SHA-256 {actual}, not the "
                f"{settings.model_sha256} that MODEL_SHA256 expects; it is damaged or another "
                "model: restore it or update MODEL_SHA256."
            )
    return Segmenter.from_onnx(
        settings.model_path, settings.ort_providers, settings.inference_threads
    )


def create_app(settings: Settings, segmenter: Segmenter) -> Starlette:
    """The ASGI app serving `segmenter`; its lifespan warms the model up before serving."""
    metrics = Metrics()
    service = _Service(settings, segmenter, metrics)
    routes = [
        Route("/segment", service.segment, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/ready", service.ready, methods=["GET"]),
        Route("/info", service.info, methods=["GET"]),
        Route("/metrics", metrics.endpoint, methods=["GET"]),
    ]
    middleware = [
        Middleware(MetricsMiddleware, metrics=metrics, routes={route.path for route in routes})
    ]
    if settings.cors_origins:
        # Uploads carry no cookies, so credentials stay off and "*" remains safe.
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=["Content-Type"],
                expose_headers=["Retry-After", "Server-Timing"],
            )
        )
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={
            404: _not_found,
            405: _method_not_allowed,
            HTTPException: _client_error,
            Exception: _server_error,
        },
        lifespan=service.lifespan,
    )


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


class _Service:
    def __init__(self, settings: Settings, segmenter: Segmenter, metrics: Metrics) -> None:
        self.settings = settings
        self.segmenter = segmenter
        self.metrics = metrics
        self.model_info = _model_info(settings, segmenter)
        # One inference at a time: onnxruntime already spreads a run over
        # INFERENCE_THREADS cores, and parallel runs would only contend for them.
        self.inference_limiter = CapacityLimiter(1)
        # Memory grows with pixels, not requests: a 30 KB PNG at the pixel limit takes
        # 0.7-0.9 GB while decoded, predicted and encoded, so big images take turns.
        self.pixel_budget = _PixelBudget(settings.max_pixels_in_flight)
        # Requests admitted and not yet answered. Only the event loop touches it,
        # so it needs no lock.
        self.pending = 0
        self.warmed_up = False

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        warm_up_image = np.full((256, 256), 128, np.uint8)
        await to_thread.run_sync(
            self.segmenter.segment, warm_up_image, limiter=self.inference_limiter
        )
        self.warmed_up = True
        model = self.model_info["model"]
        logger.info(
            "Model %s (sha256 %s) is warmed up on %s.",
            model["version"],
            model["sha256"][:12],
            ", ".join(model["providers"]),
        )
        yield

    async def ready(self, request: Request) -> JSONResponse:
        if self.warmed_up:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "warming up"}, status_code=503)

    async def info(self, request: Request) -> JSONResponse:
        return JSONResponse(self.model_info)

    async def segment(self, request: Request) -> Response:
        started = time.perf_counter()
        answer = _negotiate(request)
        image = await self._read_image(request)
        try:
            header = read_header(image, self.settings.max_image_pixels)
            async with self._admitted(), self.pixel_budget.hold(header.width * header.height):
                gray, decode_seconds = await to_thread.run_sync(_timed, decode_gray, image, header)
                probability, inference_seconds = await to_thread.run_sync(
                    _timed, self.segmenter.predict, gray, limiter=self.inference_limiter
                )
                self.metrics.inference_seconds.observe(inference_seconds)
                (segmentation, body, media_type), postprocess_seconds = await to_thread.run_sync(
                    _timed, _render, self.segmenter, answer, gray, probability
                )
        except ImageError as error:
            raise HTTPException(error.status_code, str(error)) from None
        timings = {
            "decode": decode_seconds,
            "inference": inference_seconds,
            "postprocess": postprocess_seconds,
            # Since the request's headers arrived: includes the upload and the queue wait.
            "total": time.perf_counter() - started,
        }
        headers = {
            "Vary": "Accept",
            "Server-Timing": ", ".join(
                f"{name};dur={seconds * 1000:.1f}" for name, seconds in timings.items()
            ),
        }
        if body is not None:
            return Response(body, media_type=media_type, headers=headers)
        payload = {
            "defective": segmentation.defective,
            "defect_fraction": round(segmentation.defect_fraction, 6),
            "score": round(segmentation.score, 4),
            "threshold": segmentation.threshold,
            "width": header.width,
            "height": header.height,
            "regions": [dataclasses.asdict(region) for region in segmentation.regions],
            "timings_ms": {name: round(seconds * 1000, 2) for name, seconds in timings.items()},
            "model_version": self.model_info["model"]["version"],
        }
        return JSONResponse(payload, headers=headers)

    async def _read_image(self, request: Request) -> bytes:
        media_type, options = parse_options_header(request.headers.get("content-type"))
        multipart = media_type == b"multipart/form-data"
        if not (
            multipart
            or media_type.startswith(b"image/")
            or media_type == b"application/octet-stream"
        ):
            received = media_type.decode("latin-1") or "no Content-Type"
            raise HTTPException(
                415,
                "Send the image as multipart field 'image' (curl -F image=@tile.jpg) or as the "
                f"raw body with Content-Type image/* or application/octet-stream, not {received}.",
            )
        body = await _read_body(request, self.settings.max_body_bytes, self.settings.body_timeout)
        if multipart:  # a 10 MB body takes the parser tens of milliseconds: not on the loop
            body = await to_thread.run_sync(
                _multipart_field, body, options.get(b"boundary"), b"image"
            )
        if not body:
            raise HTTPException(400, "The image is empty; send a JPEG, PNG, BMP or TIFF file.")
        return body

    @asynccontextmanager
    async def _admitted(self) -> AsyncIterator[None]:
        if self.pending >= self.settings.max_queue:
            self.metrics.queue_rejections.inc()
            raise HTTPException(
                503,
                f"The service is busy with {self.pending} images; retry in a second.",
                headers={"Retry-After": "1"},
            )
        self.pending += 1
        self.metrics.inferences_in_flight.inc()
        try:
            yield
        finally:
            self.pending -= 1
            self.metrics.inferences_in_flight.dec()


class _PixelBudget:
    """Lets requests work while the pixels of the images in work stay within `capacity`.

    A request whose image does not fit waits for others to finish (it already holds a
    queue slot); an image larger than the whole budget runs alone. Requests go in arrival
    order, so a stream of small images cannot starve a large one.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_use = 0
        self.changed = Condition()
        self.waiting: deque[object] = deque()

    @asynccontextmanager
    async def hold(self, pixels: int) -> AsyncIterator[None]:
        pixels = min(pixels, self.capacity)
        ticket = object()
        async with self.changed:
            self.waiting.append(ticket)
            try:
                while self.waiting[0] is not ticket or self.in_use + pixels > self.capacity:
                    await self.changed.wait()
            finally:  # admitted or cancelled: either way the next in line may go now
                self.waiting.remove(ticket)
                self.changed.notify_all()
            self.in_use += pixels
        try:
            yield
        finally:
            with CancelScope(shield=True):  # the pixels must be returned even on cancellation
                async with self.changed:
                    self.in_use -= pixels
                    self.changed.notify_all()


def _negotiate(request: Request) -> str:
    """The answer format: `?format=` if given, else the best match for the Accept header."""
    requested = request.query_params.get("format")
    if requested is not None:
        if requested not in FORMATS:
            raise HTTPException(400, f"Unknown format {requested!r}; use mask, json or overlay.")
        return requested
    accept = request.headers.get("accept", "").strip()
    if not accept:
        return "mask"
    ranges: list[tuple[float, str]] = []
    for item in accept.split(","):
        media_range, *parameters = item.split(";")
        quality = 1.0
        for parameter in parameters:
            key, _, value = parameter.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranges.append((quality, media_range.strip().lower()))
    # A stable sort keeps the client's order among equal qualities.
    for quality, media_range in sorted(ranges, key=lambda r: -r[0]):
        if quality > 0 and media_range in _ACCEPT_FORMATS:
            return _ACCEPT_FORMATS[media_range]
    raise HTTPException(
        406,
        "Accept allows none of image/png (mask), application/json or image/jpeg (overlay); "
        "or choose with ?format=mask|json|overlay.",
    )


_ACCEPT_FORMATS = {
    "image/png": "mask",
    "application/json": "json",
    "image/jpeg": "overlay",
    "image/*": "mask",
    "*/*": "mask",
}


async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed `limit` bytes.

    A body that has not fully arrived after `timeout` seconds gets a 408 and the
    connection is closed: uvicorn has no body timeout, so without this deadline a client
    trickling a byte a second would hold its request, and its memory, forever.
    """
    too_large = HTTPException(413, f"The request body is larger than the limit of {limit} bytes.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    try:
        with fail_after(timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:  # a chunked body declares no length up front
                    raise too_large
    except ClientDisconnect:
        raise HTTPException(400, "The client disconnected before sending the whole body.") from None
    except TimeoutError:
        raise HTTPException(
            408,
            f"The request body did not arrive within {timeout:g} s; send it faster or smaller.",
            headers={"Connection": "close"},
        ) from None
    return bytes(body)


def _multipart_field(body: bytes, boundary: bytes | None, name: bytes) -> bytes:
    """The first part called `name`, parsed in memory: uploads never touch the disk."""
    if not boundary:
        raise HTTPException(400, "The multipart Content-Type has no boundary parameter.")
    collector = _PartCollector(name)
    try:
        parser = MultipartParser(boundary, collector.callbacks())
    except FormParserError:  # e.g. a boundary longer than the parser's 256 characters
        raise HTTPException(
            400, "The multipart boundary is unusable; keep it under 70 characters (RFC 2046)."
        ) from None
    try:
        parser.write(body)
    except FormParserError:
        raise HTTPException(400, "The multipart body is malformed.") from None
    if not collector.complete:
        raise HTTPException(400, "The multipart body ends before its closing boundary.")
    if collector.value is None:
        raise HTTPException(
            400,
            f"The multipart body has no field named '{name.decode()}'; "
            "send the file with curl -F image=@tile.jpg.",
        )
    return bytes(collector.value)


class _PartCollector:
    """Parser callbacks that keep the data of the first part called `name`."""

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.value: bytearray | None = None
        self.complete = False
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._collecting = False

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
            "on_end": self._on_end,
        }

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition" and self.value is None:
            _, options = parse_options_header(bytes(self._header_value))
            if options.get(b"name") == self.name:
                self.value = bytearray()
                self._collecting = True
        self._header_name.clear()
        self._header_value.clear()

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._collecting:
            assert self.value is not None
            self.value += data[start:end]

    def _on_part_end(self) -> None:
        self._collecting = False

    def _on_end(self) -> None:
        self.complete = True


def _timed(function: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def _render(
    segmenter: Segmenter, answer: str, gray: np.ndarray, probability: np.ndarray
) -> tuple[Segmentation, bytes | None, str]:
    """The segmentation, plus the picture to send unless the answer is JSON."""
    segmentation = segmenter.postprocess(probability)
    if answer == "mask":
        return segmentation, encode_png(segmentation.mask), "image/png"
    if answer == "overlay":
        return segmentation, *render_overlay(gray, segmentation.mask, segmentation.regions)
    return segmentation, None, "application/json"


def _model_info(settings: Settings, segmenter: Segmenter) -> dict[str, Any]:
    metadata = segmenter.metadata
    sha256 = _file_sha256(settings.model_path)
    return {
        "model": {
            "version": metadata.get("model_version"),
            "sha256": sha256,
            "input_policy": json.loads(segmenter.policy.to_json()),
            "threshold": segmenter.threshold,
            "min_area": segmenter.min_area,
            "providers": segmenter.providers,
            "training_params": _json_metadata(metadata, "training_params"),
            "test_metrics": _json_metadata(metadata, "test_metrics"),
        },
        "limits": {
            "max_body_bytes": settings.max_body_bytes,
            "max_image_pixels": settings.max_image_pixels,
            "max_queue": settings.max_queue,
        },
        "formats": list(FORMATS),
    }


def _file_sha256(path: Path) -> str:
    with path.open("rb") as model_file:
        return hashlib.file_digest(model_file, "sha256").hexdigest()


def _json_metadata(metadata: Mapping[str, str], key: str) -> Any:
    """A metadata value parsed from JSON; text that is not JSON is shown as it is."""
    text = metadata.get(key)
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    routes = "POST /segment, GET /health, /ready, /info and /metrics"
    return JSONResponse({"error": f"No such route; the API serves {routes}."}, status_code=404)


async def _method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException) and exc.headers is not None
    allowed = exc.headers["Allow"]
    return JSONResponse(
        {"error": f"{request.method} is not allowed here; use {allowed}."},
        status_code=405,
        headers={"Allow": allowed},
    )


async def _client_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette logs the traceback after this answer; the client never sees it.
    return JSONResponse({"error": "Internal server error."}, status_code=500)
