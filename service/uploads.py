"""The uploaded image of a request: its content type checked, its body read within a size
limit and a deadline, and the multipart field `image` parsed out in memory.

Every problem is a client mistake and raises an HTTPException with a 4xx status and a
sentence saying what to send instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from anyio import fail_after, to_thread
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

# An upload is one part, the field `image`; a few more leave room for fields a form adds.
# Every part costs the parser Python calls, so 10 MB of tiny parts (about 180,000) took
# seconds of CPU before this limit; the parser now stops at the first part over it.
MAX_PARTS = 8
INLINE_MULTIPART_BYTES = 256 * 1024


async def read_image(request: Request, max_body_bytes: int, body_timeout: float) -> bytes:
    """The image's bytes, from multipart field `image` or from the raw body."""
    media_type, options = parse_options_header(request.headers.get("content-type"))
    multipart = media_type == b"multipart/form-data"
    if not (
        multipart or media_type.startswith(b"image/") or media_type == b"application/octet-stream"
    ):
        received = media_type.decode("latin-1") or "no Content-Type"
        raise HTTPException(
            415,
            "Send the image as multipart field 'image' (curl -F image=@tile.jpg) or as the "
            f"raw body with Content-Type image/* or application/octet-stream, not {received}.",
        )
    body = await _read_body(request, max_body_bytes, body_timeout)
    if multipart:
        boundary = options.get(b"boundary")
        # Measured: a 37 KB tile parses in 0.04 ms, less than a hop to a worker thread and
        # back; a 10 MB body takes 5.5 ms, which the event loop must not spend.
        if len(body) <= INLINE_MULTIPART_BYTES:
            body = _multipart_field(body, boundary, b"image")
        else:
            body = await to_thread.run_sync(_multipart_field, body, boundary, b"image")
    if not body:
        raise HTTPException(400, "The image is empty; send a JPEG, PNG, BMP or TIFF file.")
    return body


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
    """The one part called `name`, parsed in memory: uploads never touch the disk."""
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
    """Parser callbacks that keep the data of the part called `name`; they stop the parser
    with a 400 at a second part of that name or at more than MAX_PARTS parts."""

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.value: bytearray | None = None
        self.complete = False
        self._parts = 0
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._collecting = False

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
            "on_end": self._on_end,
        }

    def _on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise HTTPException(
                400,
                f"The multipart body has more than {MAX_PARTS} parts; "
                f"send the photo as the one field '{self.name.decode()}'.",
            )

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            _, options = parse_options_header(bytes(self._header_value))
            if options.get(b"name") == self.name:
                if self.value is not None:
                    raise HTTPException(
                        400,
                        "The multipart body has more than one field named "
                        f"'{self.name.decode()}'; send one photo per request.",
                    )
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
