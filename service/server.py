"""Run an ASGI app with uvicorn the way the service runs: its timeouts and log format, and
a graceful end on SIGTERM.

uvicorn has neither a deadline nor a size limit for a request's headers, so the HTTP
protocol here adds both: 408 to a client that began a request but did not finish its
headers in time, 431 to one whose request line and headers pass MAX_HEAD_BYTES. It also
answers malformed HTTP with the JSON error every other answer uses, where uvicorn sends
plain text.
"""

from __future__ import annotations

import asyncio
import copy
import json
import signal
from types import FrameType
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from service.config import Settings

# Seconds that requests in flight get to finish after SIGTERM; below the usual 30 s a
# platform (Heroku, Kubernetes) waits before it sends SIGKILL.
GRACEFUL_SHUTDOWN_SECONDS = 25

# Largest request line plus headers. An upload needs a few hundred bytes of them and the
# API reads no cookies, so 16 KiB (as in Node.js; nginx allows 8-32 KiB) leaves room for
# what proxies add while a client cannot make the parser hold megabytes per connection.
MAX_HEAD_BYTES = 16 * 1024


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
        http=_protocol_with_header_limits(settings.header_timeout),
        # No WebSocket routes: do not load a WebSocket library (~50 ms of every restart)
        # nor accept upgrade handshakes.
        ws="none",
    )


def _protocol_with_header_limits(seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol, closing connections whose request headers are late or
    too large, and answering every refusal of its own with a JSON error.

    uvicorn arms its only timer (keep-alive) after an answer, and any byte received
    disarms it: a client that connects and sends nothing, or sends its headers a byte at
    a time, holds a connection forever. Here a connection gets `seconds` from opening, or
    from its last answer, to complete the next request's headers.
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HeaderLimitsProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None
        _request_started = False
        _in_body = False
        _head_bytes = 0

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            self._await_headers()

        def data_received(self, data: bytes) -> None:
            # httptools keeps a header until its line ends, however long, so the bytes are
            # counted before they reach it. A head that starts in the same read as the end
            # of a pipelined body is counted from the next read, at most 256 KiB later.
            while data and not self._in_body and not self.transport.is_closing():
                room = MAX_HEAD_BYTES - self._head_bytes
                if room <= 0:
                    self._refuse(_HEADERS_TOO_LARGE_ANSWER)
                    return
                head, data = data[:room], data[room:]
                self._head_bytes += len(head)
                super().data_received(head)
            if data and not self.transport.is_closing():
                super().data_received(data)

        def send_400_response(self, msg: str) -> None:
            # uvicorn calls this on a parser error and answers in plain text; clients of
            # this API read every error as JSON.
            self._refuse(_MALFORMED_ANSWER)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._request_started = True

        def on_headers_complete(self) -> None:
            self._cancel_header_timer()
            self._request_started = False
            self._in_body = True
            self._head_bytes = 0
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._in_body = False
            super().on_message_complete()

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
                self._refuse(_REQUEST_TIMEOUT_ANSWER)
            else:
                self.transport.close()

        def _refuse(self, answer: bytes) -> None:
            """Send `answer` and close, unless an answer is half sent: bytes of another
            answer in the middle of it would only garble it."""
            cycle = self.cycle
            if cycle is None or not cycle.response_started or cycle.response_complete:
                self.transport.write(answer)
            self.transport.close()

    return HeaderLimitsProtocol


def _json_answer(status: int, reason: str, sentence: str) -> bytes:
    """A whole HTTP answer with the service's JSON error body, closing the connection."""
    body = json.dumps({"error": sentence}, separators=(",", ":")).encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + body


_REQUEST_TIMEOUT_ANSWER = _json_answer(
    408, "Request Timeout", "The request headers did not arrive in time."
)
_HEADERS_TOO_LARGE_ANSWER = _json_answer(
    431,
    "Request Header Fields Too Large",
    f"The request line and headers are larger than the limit of {MAX_HEAD_BYTES} bytes.",
)
_MALFORMED_ANSWER = _json_answer(
    400, "Bad Request", "The request is not valid HTTP/1.1; check its request line and headers."
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
