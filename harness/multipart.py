"""Multipart bodies for POST /segment, built byte by byte.

No HTTP library builds them: the reliability suite needs every part header and every
boundary under its control (to damage them on purpose), and the benchmark's client
sends the same bytes that `curl -F image=@tile.jpg` would, with nothing in between.
"""

from __future__ import annotations

BOUNDARY = "tile-defects-7d3f0a"
FORM_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
IMAGE_PART = (
    'Content-Disposition: form-data; name="image"; filename="tile.jpg"\r\nContent-Type: image/jpeg'
)
TEXT_PART = 'Content-Disposition: form-data; name="camera"'


def form(parts: list[tuple[str, bytes]], boundary: str = BOUNDARY, closing: bool = True) -> bytes:
    """A multipart body from (part headers, data) pairs, lines ended with CRLF; without
    the closing boundary when `closing` is False."""
    body = b""
    for headers, data in parts:
        body += f"--{boundary}\r\n{headers}\r\n\r\n".encode() + data + b"\r\n"
    return body + (f"--{boundary}--\r\n".encode() if closing else b"")
