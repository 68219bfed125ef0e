"""Service settings, read from environment variables in this one place.

Every value is checked when the process starts, so a typo stops it with one sentence
naming the variable instead of surfacing as an odd failure under load.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_MODEL_PATH = Path(__file__).resolve().parents[1] / "models" / "segmenter.onnx"
# Every variable the service reads; tools that start it clear these for a clean run.
ENVIRONMENT_VARIABLES = (
    "MODEL_PATH",
    "HOST",
    "PORT",
    "MAX_BODY_BYTES",
    "MAX_IMAGE_PIXELS",
    "ORT_PROVIDERS",
    "INFERENCE_THREADS",
    "INFERENCE_SESSIONS",
    "MAX_DECODES",
    "MAX_QUEUE",
    "MAX_PIXELS_IN_FLIGHT",
    "CORS_ORIGINS",
    "LOG_LEVEL",
    "HEADER_TIMEOUT",
    "BODY_TIMEOUT",
    "KEEP_ALIVE_TIMEOUT",
    "MODEL_SHA256",
    "MODEL_REGISTRY_VERSION",
)
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    model_path: Path = DEFAULT_MODEL_PATH
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 10_000_000
    max_image_pixels: int = 25_000_000
    # None lets the Segmenter choose: CUDA when onnxruntime-gpu sees a GPU, else CPU.
    ort_providers: tuple[str, ...] | None = None
    inference_threads: int = 0
    # onnxruntime sessions, each running one inference at a time with its own threads.
    # Two on 2 cores, measured back to back: requests/s at concurrency 16 from 35 to 48
    # (plain FastAPI's 48.5), concurrency 1 unchanged, peak RSS 182 -> 190 MB; three or
    # four sessions added nothing.
    inference_sessions: int = 2
    # Uploads decoded at once; 0 leaves decoding bounded only by MAX_QUEUE.
    max_decodes: int = 0
    max_queue: int = 16
    # Pixels of the images being decoded, segmented and encoded at once (30-40 bytes
    # of memory each); images that do not fit wait their turn.
    max_pixels_in_flight: int = 25_000_000
    cors_origins: tuple[str, ...] = ()
    log_level: str = "info"
    # Slow or silent clients: a connection gets `header_timeout` seconds, from opening or
    # from its last answer, to deliver complete request headers; a /segment body must
    # arrive within `body_timeout` seconds (10 MB at ~330 KB/s); an idle kept-alive
    # connection is closed after `keep_alive_timeout` seconds.
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    # When set, the model file must have this SHA-256 or the service refuses to start:
    # onnxruntime cannot see a flipped bit in the weights, a checksum can.
    model_sha256: str | None = None
    # The model's version in the registry (segmenter@v1.2.3 -> "v1.2.3"), which the deploy
    # workflow builds into the image: a promotion names a version, and the file's own card
    # cannot know the version it is registered under later.
    model_registry_version: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Settings from `environ`; raises SettingsError with one sentence on a bad value."""
        defaults = cls()
        return cls(
            model_path=Path(environ.get("MODEL_PATH") or defaults.model_path),
            host=environ.get("HOST") or defaults.host,
            port=_integer(environ, "PORT", defaults.port, minimum=1, maximum=65535),
            max_body_bytes=_integer(environ, "MAX_BODY_BYTES", defaults.max_body_bytes, minimum=1),
            max_image_pixels=_integer(
                environ, "MAX_IMAGE_PIXELS", defaults.max_image_pixels, minimum=1
            ),
            ort_providers=_providers(environ.get("ORT_PROVIDERS", "")),
            inference_threads=_integer(
                environ, "INFERENCE_THREADS", defaults.inference_threads, minimum=0
            ),
            inference_sessions=_integer(
                environ, "INFERENCE_SESSIONS", defaults.inference_sessions, minimum=1, maximum=16
            ),
            max_decodes=_integer(environ, "MAX_DECODES", defaults.max_decodes, minimum=0),
            max_queue=_integer(environ, "MAX_QUEUE", defaults.max_queue, minimum=1),
            max_pixels_in_flight=_integer(
                environ, "MAX_PIXELS_IN_FLIGHT", defaults.max_pixels_in_flight, minimum=1
            ),
            cors_origins=_origins(environ.get("CORS_ORIGINS", "")),
            log_level=_log_level(environ.get("LOG_LEVEL") or defaults.log_level),
            header_timeout=_seconds(environ, "HEADER_TIMEOUT", defaults.header_timeout),
            body_timeout=_seconds(environ, "BODY_TIMEOUT", defaults.body_timeout),
            keep_alive_timeout=_seconds(environ, "KEEP_ALIVE_TIMEOUT", defaults.keep_alive_timeout),
            model_sha256=_sha256(environ.get("MODEL_SHA256", "")),
            model_registry_version=_registry_version(environ.get("MODEL_REGISTRY_VERSION", "")),
        )


def process_settings() -> Settings:
    """The settings of this process (`python -m service`, `python -m batch`), read from
    its environment, which is made ready for the libraries first; raises SettingsError.

    onnxruntime (1.32 on Linux) starts a telemetry client when it loads, which writes
    $TMPDIR/.ses and may call out to Microsoft's collector; a factory API must do
    neither. OpenCV's own bomb guard stands behind the check of each image header, with
    the same limit. Both libraries read their variable once, when imported, so this runs
    before anything imports them (ORT_PROVIDERS imports onnxruntime, in Settings).
    """
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    settings = Settings.from_env()
    os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(settings.max_image_pixels)
    return settings


def _integer(
    environ: Mapping[str, str], name: str, default: int, minimum: int, maximum: int | None = None
) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    bounds = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        raise SettingsError(f"{name} must be a whole number {bounds}, got {text!r}.")
    return value


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 < value <= _MAX_TIMEOUT_SECONDS):  # also refuses nan
        raise SettingsError(
            f"{name} must be a number of seconds above 0 and at most "
            f"{_MAX_TIMEOUT_SECONDS}, got {text!r}."
        )
    return value


_MAX_TIMEOUT_SECONDS = 3600


def _sha256(text: str) -> str | None:
    digest = text.strip().lower()
    if not digest:
        return None
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise SettingsError(f"MODEL_SHA256 must be 64 hexadecimal digits, got {text!r}.")
    return digest


# GTO's versions: "v" and a semantic version, with an optional pre-release or build part.
_REGISTRY_VERSION = re.compile(r"v\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]+)?")


def _registry_version(text: str) -> str | None:
    version = text.strip()
    if not version:
        return None
    if not _REGISTRY_VERSION.fullmatch(version):
        raise SettingsError(
            f"MODEL_REGISTRY_VERSION must be a registry version like v1.2.3, got {text!r}."
        )
    return version


def _providers(text: str) -> tuple[str, ...] | None:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        return None
    import onnxruntime  # imported here so that reading settings stays cheap without it

    available = onnxruntime.get_available_providers()
    missing = [name for name in names if name not in available]
    if missing:
        raise SettingsError(
            f"ORT_PROVIDERS names {', '.join(missing)}, which this onnxruntime lacks; "
            f"available: {', '.join(available)}."
        )
    return names


def _origins(text: str) -> tuple[str, ...]:
    origins = tuple(origin.strip() for origin in text.split(",") if origin.strip())
    for origin in origins:
        parts = urlsplit(origin)
        well_formed = parts.scheme in ("http", "https") and parts.netloc and not parts.path
        if origin != "*" and not (well_formed and not parts.query and not parts.fragment):
            raise SettingsError(
                f"CORS_ORIGINS entries must be '*' or like 'https://example.com', got {origin!r}."
            )
    return origins


def _log_level(text: str) -> str:
    level = text.strip().lower()
    if level not in LOG_LEVELS:
        raise SettingsError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {text!r}.")
    return level
