"""Run an ASGI app with uvicorn the way the service runs: its timeouts and log format, and
a graceful end on SIGTERM.

uvicorn has no deadline for a request's headers, so the HTTP protocol here adds one and
answers 408 to a client that began a request but did not finish its headers in time.
"""

from __future__ import annotations

import asyncio
import copy
import signal
from types import FrameType
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from service.config import Settings

# Seconds that requests in flight get to finish after SIGTERM; below the usual 30 s a
# platform (Heroku, Kubernetes) waits before it sends SIGKILL.
GRACEFUL_SHUTDOWN_SECONDS = 25


def serve(app: ASGIApp, settings: Settings) -> None:
    """Serve `app` on the settings' host and port until SIGTERM (or Ctrl-C) ends it."""
    # uvicorn re-raises the SIGTERM that stopped it once its graceful shutdown is done;
    # being stopped by the platform is a normal end, so exit 0 rather than "killed".
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=_log_config(settings.log_level),
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        timeout_keep_alive=settings.keep_alive_timeout,  # type: ignore[arg-type]  # a float works
        http=_protocol_with_header_timeout(settings.header_timeout),
        # No WebSocket routes: do not load a WebSocket library (~50 ms of every restart)
        # nor accept upgrade handshakes.
        ws="none",
    )


def _protocol_with_header_timeout(seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol, closing connections whose request headers are late.

    uvicorn arms its only timer (keep-alive) after an answer, and any byte received
    disarms it: a client that connects and sends nothing, or sends its headers a byte at
    a time, holds a connection forever. Here a connection gets `seconds` from opening, or
    from its last answer, to complete the next request's headers.
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None
        _request_started = False

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            self._await_headers()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._request_started = True

        def on_headers_complete(self) -> None:
            self._cancel_header_timer()
            self._request_started = False
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            pipelined = bool(self.pipeline)
            super().on_response_complete()
            # Unless a pipelined request (headers complete) has just started, the
            # connection now waits for the next request's headers.
            if not pipelined and not self.transport.is_closing():
                self._await_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

        def _await_headers(self) -> None:
            self._cancel_header_timer()
            self._header_timer = self.loop.call_later(seconds, self._headers_timed_out)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_timed_out(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            if self._request_started:  # tell a client that began a request why it ends
                self.transport.write(_REQUEST_TIMEOUT_ANSWER)
            self.transport.close()

    return HeaderTimeoutProtocol


_REQUEST_TIMEOUT_BODY = b'{"error":"The request headers did not arrive in time."}'
_REQUEST_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: application/json\r\n"
    b"content-length: " + str(len(_REQUEST_TIMEOUT_BODY)).encode() + b"\r\n"
    b"connection: close\r\n\r\n" + _REQUEST_TIMEOUT_BODY
)


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging, with the service's own logger printed the same way."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["service"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    # python-multipart logs a warning for every malformed upload, unformatted, on stderr:
    # the client already gets a 400 saying so, and a flood of bad uploads must not flood
    # the log.
    config["loggers"]["python_multipart"] = {"level": "ERROR", "propagate": False}
    return config


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
