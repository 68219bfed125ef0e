"""What a correct answer from POST /segment looks like: the contract every check enforces.

A 2xx carries a mask (PNG) of the input's size, a JSON description of that size, or an
overlay picture of that size; a 4xx carries a JSON object with an `error` sentence that
gives away nothing of the server's insides (no stack trace, no file path).
"""

from __future__ import annotations

import json
import re

import cv2
import numpy as np

# What a leaked stack trace or file path looks like in an error message.
_LEAK = re.compile(
    r"Traceback|File \"|\b\w+\.py\b|site-packages|/(?:work|home|usr|tmp|opt|var|root|app)/"
    r"|[A-Za-z]:\\\\|Exception:|Error\(",
)
# The leading bytes of JPEG, PNG, BMP and TIFF (both byte orders): OpenCV reads more.
_SIGNATURES = (b"\xff\xd8", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"MM\x00*")


def decoded_size(image: bytes) -> tuple[int, int] | None:
    """(height, width) of an image as OpenCV, the service's decoder, reads it, or None."""
    if not image.startswith(_SIGNATURES):
        return None
    flags = cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        decoded = cv2.imdecode(np.frombuffer(image, np.uint8), flags)
    except cv2.error:  # past OpenCV's own size limits
        return None
    if decoded is None:
        return None
    height, width = decoded.shape[:2]
    return height, width


def success_problem(
    status: int, content_type: str, body: bytes, answer: str, size: tuple[int, int] | None
) -> str | None:
    """Why a 2xx answer breaks the contract for an input of `size` (height, width), or None."""
    if size is None:
        return f"{status} for an input OpenCV itself cannot decode"
    if answer == "json":
        try:
            payload = json.loads(body)
        except ValueError:
            return f"{status} JSON answer does not parse"
        if (payload.get("height"), payload.get("width")) != size:
            return (
                f"{status} JSON says {payload.get('width')}x{payload.get('height')}, input {size}"
            )
        return None
    expected_types = ("image/png",) if answer == "mask" else ("image/jpeg", "image/png")
    if content_type.split(";")[0].strip() not in expected_types:
        return f"{status} {answer} answer has Content-Type {content_type!r}"
    picture = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)
    if picture is None:
        return f"{status} {answer} answer is not a readable picture"
    if picture.shape[:2] != size:
        return f"{status} {answer} answer is {picture.shape[:2]}, the input is {size}"
    if answer == "mask":
        if picture.ndim != 2 or picture.dtype != np.uint8:
            return f"{status} mask is {picture.dtype} with shape {picture.shape}, not 8-bit gray"
        if not np.isin(picture, (0, 255)).all():
            return f"{status} mask holds values other than 0 and 255"
    elif picture.ndim != 3:
        return f"{status} overlay is not a colour picture"
    return None


def error_problem(status: int, content_type: str, body: bytes) -> str | None:
    """Why a 4xx answer breaks the contract (not a JSON error, or it leaks), or None."""
    if content_type.split(";")[0].strip() != "application/json":
        return f"{status} with Content-Type {content_type!r}, not a JSON error"
    try:
        payload = json.loads(body)
    except ValueError:
        return f"{status} error body does not parse as JSON"
    if not isinstance(payload, dict) or not isinstance(payload.get("error"), str):
        return f"{status} JSON error has no 'error' sentence"
    leak = leaked(payload["error"])
    if leak:
        return f"{status} error message leaks {leak!r}: {payload['error'][:200]!r}"
    return None


def leaked(text: str) -> str | None:
    """The first piece of `text` that looks like a stack trace or a file path, or None."""
    match = _LEAK.search(text)
    return match.group(0) if match else None
