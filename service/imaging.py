"""Uploaded bytes to a grayscale array, and arrays back to PNG or JPEG bytes.

Decoding policy, so that every upload gets the same, predictable treatment:

- JPEG, PNG, BMP and TIFF are accepted, recognised by their leading bytes, never by the
  file name or the declared content type.
- The width and height are read from the file header *before* decoding and checked
  against the pixel limit: a 50 KB PNG can declare a 50000 x 50000 image, and decoding
  it first would allocate gigabytes. OpenCV's own limit stands behind that check
  (OPENCV_IO_MAX_IMAGE_PIXELS, which `python -m service` sets to the same value).
- Colour (with or without alpha, or from a palette) becomes luminance; alpha is ignored,
  the tile is judged by its stored pixels. A colour JPEG gives its own luminance channel
  (Y), which it stores at full resolution beside its subsampled colour. 16-bit samples
  keep their high byte (>> 8), so exposure is preserved: a dark 16-bit photo stays dark,
  as the camera's 8-bit export would, instead of being stretched to full contrast.
- EXIF orientation is ignored, so the mask matches the stored pixel grid and the
  header's width and height.
- A truncated file, or one whose structure (header, chunks, directory) is damaged, is
  refused. libjpeg itself only warns about a JPEG cut short and fills the rest with
  grey, so a JPEG must have its end-of-image marker after its last scan and a PNG its
  end chunk before anything is decoded; OpenCV's TIFF and BMP readers fail on a short
  file themselves, and a test pins that for each format so an OpenCV upgrade that
  changes it cannot pass unnoticed. Corrupt compressed data inside a complete JPEG or
  TIFF decodes to whatever libjpeg or libtiff make of it: they only warn, and OpenCV
  does not pass the warning on.
- Samples other than 8- or 16-bit integers (floating-point or 32-bit TIFF) are refused:
  there is no one right way to map them to grey levels.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np

from service.regions import Segmentation

# OpenCV logs every file it fails to decode on stderr; the client already gets a 400
# saying so, and a flood of bad uploads must not flood the log.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_FATAL)


class ImageError(ValueError):
    """The upload is not an image the service can read; carries the HTTP status to answer."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class ImageHeader:
    format: str  # JPEG, PNG, BMP or TIFF
    width: int
    height: int


def read_header(data: bytes, max_pixels: int) -> ImageHeader:
    """The format and declared size of an image file, refused past `max_pixels`."""
    known = [(name, parse) for signature, name, parse in _FORMATS if data.startswith(signature)]
    if not known:
        raise ImageError(415, "The upload is not a JPEG, PNG, BMP or TIFF image.")
    name, parse = known[0]
    try:
        width, height = parse(data)
    except (struct.error, ValueError, KeyError):  # the header is cut short or inconsistent
        width = height = 0
    if width <= 0 or height <= 0:
        raise ImageError(400, f"The {name} header is damaged; it declares no valid size.")
    if width * height > max_pixels:
        raise ImageError(
            413,
            f"The image is {width} x {height} = {width * height} pixels; "
            f"the limit is {max_pixels} pixels.",
        )
    if max(width, height) > MAX_SIDE:
        raise ImageError(
            413,
            f"The image is {width} x {height} pixels; sides longer than {MAX_SIDE} pixels "
            "are not supported (its mask could not be written as a PNG).",
        )
    return ImageHeader(name, width, height)


def decode_gray(data: bytes, header: ImageHeader) -> np.ndarray:
    """A 2-D uint8 grayscale array of the size `header` declares."""
    damaged = ImageError(400, f"The {header.format} image is damaged or truncated.")
    if _cut_short(data, header):
        raise damaged
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), _READ_FLAGS)
    # OpenCV returns None for a file it cannot decode, and raises for one it refuses, such
    # as one past OPENCV_IO_MAX_IMAGE_PIXELS.
    except cv2.error:
        image = None
    # A size other than the header's would bypass the pixel limit checked on the header.
    if image is None or image.shape != (header.height, header.width):
        raise damaged
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    if image.dtype != np.uint8:
        raise ImageError(
            415, f"The {header.format} image has {image.dtype} samples; 8 or 16 bits are read."
        )
    return image


def encode_png(image: np.ndarray) -> bytes:
    return _encode(".png", image, _PNG_PARAMS)


def render_overlay(gray: np.ndarray, segmentation: Segmentation) -> tuple[bytes, str]:
    """The photo for a person: defects tinted red, each region outlined and numbered with
    its class and mean probability, and a banner with the verdict and the legend; returns the bytes
    and their media type."""
    picture = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    defect = segmentation.mask > 0
    picture[defect] = picture[defect] // 2 + np.array([0, 0, 127], np.uint8)  # BGR
    # Sizes follow the photo, so labels stay legible on a 200 px tile and on a 4000 px one.
    # The shorter side sets them: by the longer one, a 1 x 1,000,000 photo got 2,000 px
    # lines and glyphs that took OpenCV longer to draw than the request may take.
    scale = max(0.35, min(gray.shape) / 1200)
    thickness = max(1, round(min(gray.shape) / 500))
    contours, _ = cv2.findContours(
        defect.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    cv2.drawContours(picture, contours, -1, _OUTLINE, thickness)
    for number, region in enumerate(segmentation.regions, 1):
        kind = f" {region.class_name}" if region.class_name else ""
        label = f"{number}:{kind} p {region.mean_probability:.2f}"
        _label(picture, label, (region.x, region.y + region.height), scale, _OUTLINE)
    score, threshold = segmentation.score, segmentation.decision_threshold
    if segmentation.defective:
        verdict = f"defective - score {score:.2f} >= {threshold:.2f}"
        legend = "red: defect; n: class p = region n, its class, mean probability"
        _banner(picture, [verdict, legend], scale, (80, 80, 255))
    else:
        _banner(picture, [f"no defect found - score {score:.2f} < {threshold:.2f}"], scale, _OK)
    if max(gray.shape) > _JPEG_MAX_SIDE:  # JPEG cannot store it; PNG can
        return _encode(".png", picture, _PNG_PARAMS), "image/png"
    return _encode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 90]), "image/jpeg"


def _label(
    picture: np.ndarray, text: str, corner: tuple[int, int], scale: float, colour: Colour
) -> tuple[int, int]:
    """`text` on a dark box whose top-left corner is `corner`, moved inside the picture
    where it would stick out; returns the box's size."""
    (width, height), baseline = cv2.getTextSize(text, _FONT, scale, 1)
    pad = max(2, round(4 * scale))
    box_width, box_height = width + 2 * pad, height + baseline + 2 * pad
    x = max(0, min(corner[0], picture.shape[1] - box_width))
    y = max(0, min(corner[1], picture.shape[0] - box_height))
    cv2.rectangle(picture, (x, y), (x + box_width, y + box_height), (0, 0, 0), cv2.FILLED)
    origin = (x + pad, y + pad + height)
    cv2.putText(picture, text, origin, _FONT, scale, colour, 1, cv2.LINE_AA)
    return box_width, box_height


def _banner(picture: np.ndarray, lines: list[str], scale: float, colour: Colour) -> None:
    """`lines` at the top left, one under the other, the first in `colour`."""
    y = 0
    for index, line in enumerate(lines):
        _, height = _label(picture, line, (0, y), scale, colour if index == 0 else _TEXT)
        y += height


Colour = tuple[int, int, int]
_FONT = cv2.FONT_HERSHEY_SIMPLEX  # Hershey fonts draw ASCII only: no dashes or symbols
_OUTLINE: Colour = (0, 255, 255)  # BGR yellow, clear on both grey tile and red tint
_OK: Colour = (120, 220, 120)
_TEXT: Colour = (255, 255, 255)


# Grey at the file's own bit depth (16-bit kept for the >> 8 below; OpenCV's own reduction
# rounds instead), colour to luminance without alpha, stored pixel grid.
_READ_FLAGS = cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION

# Fast settings for masks, which are long runs of 0 and 255: compression level 1 (the
# default 6 took longer than the network's inference on a typical tile), no row filter
# and run-length matching. OpenCV's default, trying every filter on each row, took 5
# times as long on a typical tile's mask (1.3 ms, not 0.26) and wrote over twice the bytes.
_PNG_PARAMS = [
    *(cv2.IMWRITE_PNG_COMPRESSION, 1),
    *(cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE),
    *(cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE),
]

# libjpeg's JPEG_MAX_DIMENSION, not the 65,535 the format's 16-bit fields could hold: an
# overlay 65,501 to 65,535 pixels long was a 500.
_JPEG_MAX_SIDE = 65_500
# libpng's default limit on a side (PNG_USER_WIDTH_MAX/HEIGHT_MAX): most PNG readers
# refuse a longer one, so a client could not open the mask of a 1 x 1,000,001 BMP.
MAX_SIDE = 1_000_000

# The sizes come from this parser, not the `imagesize` package (2.0.1), which was measured
# against it: imagesize reads an OS/2 bitmap's 16-bit sides as 32-bit ones (a valid 5 x 7
# file came out 458757 x 524289, a 413), and its JPEG marker scan has no bound, so a forged
# 10 MB file of empty segments held the event loop for 3.7 s (this parser: 1 ms).

# JPEG frame headers (SOF0-SOF15) that carry the size; C4, C8 and CC share the range but
# are other segments.
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field.
_JPEG_STANDALONE_MARKERS = frozenset([0x01, *range(0xD0, 0xD8)])
# Header parsing runs on the event loop, so a forged file must not make it loop long:
# real photos have a few dozen segments before the frame header, and a TIFF directory
# lists its width and length after at most two other tags.
_JPEG_MAX_STEPS = 1000
_TIFF_MAX_ENTRIES = 16


def _cut_short(data: bytes, header: ImageHeader) -> bool:
    """A JPEG without an end-of-image marker after its last scan, or a PNG without its end
    chunk (and that chunk's checksum)."""
    if header.format == "JPEG":
        # Scan data cannot hold either marker (an 0xFF byte there is followed by 0x00 or
        # a restart marker), so a file cut inside its last scan has no end marker after it.
        return data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")
    if header.format == "PNG":
        end = data.rfind(b"IEND")
        return end < 0 or len(data) < end + 8
    return False


def _encode(extension: str, image: np.ndarray, params: list[int]) -> bytes:
    ok, encoded = cv2.imencode(extension, image, params)
    if not ok:  # read_header keeps out every size the encoders cannot write
        raise RuntimeError(f"OpenCV could not encode a {image.shape} image as {extension}")
    return encoded.tobytes()


def _png_size(data: bytes) -> tuple[int, int]:
    length, chunk, width, height = struct.unpack_from(">I4sII", data, 8)
    if (length, chunk) != (13, b"IHDR"):
        raise ValueError("the first chunk is not IHDR")
    return width, height


def _jpeg_size(data: bytes) -> tuple[int, int]:
    position = 2
    for _ in range(_JPEG_MAX_STEPS):
        fill, marker = struct.unpack_from(">BB", data, position)
        if fill != 0xFF:
            raise ValueError("expected a marker")
        if marker == 0xFF:  # padding before a marker
            position += 1
        elif marker in _JPEG_STANDALONE_MARKERS:
            position += 2
        elif marker in (0xD9, 0xDA):  # end of image or scan data before any frame header
            raise ValueError("no frame header")
        elif marker in _JPEG_FRAME_MARKERS:
            height, width = struct.unpack_from(">HH", data, position + 5)
            return width, height
        else:
            (length,) = struct.unpack_from(">H", data, position + 2)
            position += 2 + max(length, 2)
    raise ValueError("no frame header among the first segments")


def _bmp_size(data: bytes) -> tuple[int, int]:
    (header_size,) = struct.unpack_from("<I", data, 14)
    if header_size == 12:  # OS/2 BITMAPCOREHEADER: unsigned 16-bit sides
        return struct.unpack_from("<HH", data, 18)
    width, height = struct.unpack_from("<ii", data, 18)
    return width, abs(height)  # a negative height means rows are stored top-down


def _tiff_size(data: bytes) -> tuple[int, int]:
    order = "<" if data.startswith(b"II") else ">"
    (offset,) = struct.unpack_from(order + "I", data, 4)
    (count,) = struct.unpack_from(order + "H", data, offset)
    # Entries are sorted by tag, so width (256) and length (257) come among the first.
    count = min(count, _TIFF_MAX_ENTRIES)
    sides: dict[int, int] = {}
    for tag, kind, _, value in struct.iter_unpack(
        order + "HHI4s", data[offset + 2 : offset + 2 + 12 * count]
    ):
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
            (sides[tag],) = struct.unpack_from(order + {3: "H", 4: "I"}[kind], value)
    return sides[256], sides[257]


_FORMATS = (
    (b"\xff\xd8", "JPEG", _jpeg_size),
    (b"\x89PNG\r\n\x1a\n", "PNG", _png_size),
    (b"BM", "BMP", _bmp_size),
    (b"II*\x00", "TIFF", _tiff_size),
    (b"MM\x00*", "TIFF", _tiff_size),
)
