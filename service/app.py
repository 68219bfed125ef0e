"""The HTTP API: POST /segment, and GET /health, /ready, /info and /metrics; the page for
people (GET /, service/page.py) and the contract for programs (GET /openapi.json,
service/openapi.py).

A request to /segment passes cheap checks on the event loop first (answer format,
content type, body size, image header), so that a bad upload costs no queue slot. Only
then is it admitted (service/admission.py), and decoding, inference and encoding run in
worker threads, so /health and /metrics answer while a model runs.
"""

from __future__ import annotations

import copy
import json
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from typing import Any

import numpy as np
from anyio import to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.admission import BoundedQueue, PixelBudget
from service.answers import describe
from service.config import Settings
from service.imaging import (
    ImageError,
    ImageHeader,
    decode_gray,
    encode_png,
    read_header,
    render_overlay,
)
from service.openapi import openapi
from service.page import page_routes
from service.regions import Segmentation
from service.segmenter import Prediction, Segmenter
from service.telemetry import Metrics, MetricsMiddleware
from service.uploads import read_image

logger = logging.getLogger("service")

FORMATS = ("mask", "json", "labels", "overlay")


def load_segmenter(settings: Settings) -> Segmenter:
    """The model named by the settings, in INFERENCE_SESSIONS onnxruntime sessions; raises
    ModelError (service.contract) with one sentence if it is unusable."""
    segmenters = [
        Segmenter.from_onnx(
            settings.model_path,
            settings.ort_providers,
            settings.inference_threads,
            settings.model_sha256,
        )
        for _ in range(settings.inference_sessions)
    ]
    return segmenters[0] if len(segmenters) == 1 else _pooled(segmenters)


def _pooled(segmenters: list[Segmenter]) -> Segmenter:
    """The first Segmenter, its runs handed to whichever of the sessions is free."""
    # Last in, first out: one request at a time keeps to one session, whose memory and
    # thread are warm, instead of taking turns with an idle one.
    free: queue.LifoQueue[Callable[..., Any]] = queue.LifoQueue()
    for segmenter in segmenters:
        free.put(segmenter.runner)

    def run(*args: Any, **kwargs: Any) -> Any:
        runner = free.get()
        try:
            return runner(*args, **kwargs)
        finally:
            free.put(runner)

    pooled = copy.copy(segmenters[0])
    pooled.runner = run
    return pooled


def create_app(settings: Settings, segmenter: Segmenter) -> Starlette:
    """The ASGI app serving `segmenter`, loaded from a model file (its card and hash answer
    /info); its lifespan warms the model up before serving."""
    metrics = Metrics()
    service = _Service(settings, segmenter, metrics)
    routes = [
        Route("/segment", service.segment, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/ready", service.ready, methods=["GET"]),
        Route("/info", service.info, methods=["GET"]),
        Route("/metrics", metrics.endpoint, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        *page_routes(),
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
        # A request decodes, infers and renders in one worker thread, which waits at these
        # gates: one hop to a thread and back per request, not one per step.
        # One inference per session: onnxruntime already spreads a run over
        # INFERENCE_THREADS cores, and more runs than sessions would only contend for them.
        self.inference_gate = threading.BoundedSemaphore(settings.inference_sessions)
        # Without MAX_DECODES, only MAX_QUEUE bounds decoding.
        self.decode_gate: AbstractContextManager[Any] = (
            threading.BoundedSemaphore(settings.max_decodes)
            if settings.max_decodes
            else nullcontext()
        )
        self.queue = BoundedQueue(settings.max_queue, metrics)
        # Memory grows with pixels, not requests: a 30 KB PNG at the pixel limit takes
        # 0.7-0.9 GB while decoded, predicted and encoded, so big images take turns.
        self.pixel_budget = PixelBudget(settings.max_pixels_in_flight)
        self.warmed_up = False

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await to_thread.run_sync(self._warm_up)
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
        image = await read_image(request, self.settings.max_body_bytes, self.settings.body_timeout)
        try:
            header = read_header(image, self.settings.max_image_pixels)
            async with self.queue.admitted(), self.pixel_budget.hold(header.width * header.height):
                segmentation, body, media_type, timings = await to_thread.run_sync(
                    self._work, answer, image, header
                )
        except ImageError as error:
            raise HTTPException(error.status_code, str(error)) from None
        # Since the request's headers arrived: includes the upload and the queue wait.
        timings["total"] = time.perf_counter() - started
        headers = {
            "Vary": "Accept",
            "Server-Timing": ", ".join(
                f"{name};dur={seconds * 1000:.1f}" for name, seconds in timings.items()
            ),
        }
        if body is not None:
            return Response(body, media_type=media_type, headers=headers)
        payload = {
            **describe(segmentation),
            "width": header.width,
            "height": header.height,
            "timings_ms": {name: round(seconds * 1000, 2) for name, seconds in timings.items()},
            "model_version": self.model_info["model"]["version"],
        }
        return JSONResponse(payload, headers=headers)

    def _work(
        self, answer: str, image: bytes, header: ImageHeader
    ) -> tuple[Segmentation, bytes | None, str, dict[str, float]]:
        """Decode, infer and render in the calling worker thread; with each step's seconds."""
        with self.decode_gate:
            gray, decode_seconds = _timed(decode_gray, image, header)
        with self.inference_gate:
            prediction, inference_seconds = _timed(self.segmenter.predict, gray)
        self.metrics.inference_seconds.observe(inference_seconds)
        (segmentation, body, media_type), postprocess_seconds = _timed(
            _render, self.segmenter, answer, gray, prediction
        )
        timings = {
            "decode": decode_seconds,
            "inference": inference_seconds,
            "postprocess": postprocess_seconds,
        }
        return segmentation, body, media_type, timings

    def _warm_up(self) -> None:
        """One request's whole path, every answer format included, outside the metrics.

        OpenCV and onnxruntime set themselves up on first use (the first request took
        70 ms instead of 30, reading the CPU quota from /sys on the way); users should
        not pay for that, nor should uploads share a moment with it. The photo is as
        large as a typical tile, so that it is scaled both ways as theirs are.
        """
        image = encode_png(np.full((400, 400), 128, np.uint8))
        gray = decode_gray(image, read_header(image, self.settings.max_image_pixels))
        with self.inference_gate:
            prediction = self.segmenter.predict(gray)
        for answer in FORMATS:
            _render(self.segmenter, answer, gray, prediction)


def _negotiate(request: Request) -> str:
    """The answer format: `?format=` if given, else the best match for the Accept header."""
    requested = request.query_params.get("format")
    if requested is not None:
        if requested not in FORMATS:
            raise HTTPException(
                400, f"Unknown format {requested!r}; use mask, json, labels or overlay."
            )
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
        "or choose with ?format=mask|json|labels|overlay.",
    )


_ACCEPT_FORMATS = {
    "image/png": "mask",
    "application/json": "json",
    "image/jpeg": "overlay",
    "image/*": "mask",
    "*/*": "mask",
}


def _timed(function: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def _render(
    segmenter: Segmenter, answer: str, gray: np.ndarray, prediction: Prediction
) -> tuple[Segmentation, bytes | None, str]:
    """The segmentation, plus the picture to send unless the answer is JSON."""
    segmentation = segmenter.postprocess(prediction)
    if answer == "mask":
        return segmentation, encode_png(segmentation.mask), "image/png"
    if answer == "labels":
        return segmentation, encode_png(segmentation.labels), "image/png"
    if answer == "overlay":
        return segmentation, *render_overlay(gray, segmentation)
    return segmentation, None, "application/json"


def _model_info(settings: Settings, segmenter: Segmenter) -> dict[str, Any]:
    card, sha256 = segmenter.card, segmenter.sha256
    if card is None or sha256 is None:
        raise ValueError("The app serves a Segmenter loaded from a model file (from_onnx).")
    return {
        "model": {
            "version": card.version,
            "registry_version": settings.model_registry_version,
            "sha256": sha256,
            "input_policy": json.loads(card.policy.to_json()),
            "threshold": segmenter.threshold,
            "decision_threshold": segmenter.decision_threshold,
            "min_area": card.min_area,
            "border": card.border,
            "classes": list(segmenter.classes),
            "providers": segmenter.providers,
            "training_params": card.training_params,
            "test_metrics": card.test_metrics,
        },
        "limits": {
            "max_body_bytes": settings.max_body_bytes,
            "max_image_pixels": settings.max_image_pixels,
            "max_queue": settings.max_queue,
        },
        "formats": list(FORMATS),
    }


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    routes = "POST /segment, GET /, /page.js, /openapi.json, /health, /ready, /info and /metrics"
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
