"""Uploaded bytes to a grayscale array, and arrays back to PNG or JPEG bytes.

Decoding policy, so that every upload gets the same, predictable treatment:

- JPEG, PNG, BMP and TIFF are accepted, recognised by their leading bytes, never by the
  file name or the declared content type.
- The width and height are read from the file header *before* decoding and checked
  against the pixel limit: a 50 KB PNG can declare a 50000 x 50000 image, and decoding
  it first would allocate gigabytes.
- Colour (with or without alpha, or from a palette) becomes luminance; alpha is ignored,
  the tile is judged by its stored pixels. 16-bit samples keep their high byte (>> 8),
  so exposure is preserved: a dark 16-bit photo stays dark, as the camera's 8-bit export
  would, instead of being stretched to full contrast.
- EXIF orientation is ignored, so the mask matches the stored pixel grid and the
  header's width and height.
- A damaged or truncated file is refused: Pillow raises on incomplete input instead of
  filling the rest with gray (its LOAD_TRUNCATED_IMAGES stays off), and a test pins that
  behaviour so a Pillow upgrade that changes it cannot pass unnoticed.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from service.segmenter import Region


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
    try:
        with Image.open(io.BytesIO(data), formats=[header.format]) as opened:
            image = _to_gray(opened)
    # Pillow's decoders signal a malformed file with many unrelated exception types.
    except Exception:
        image = None
    # A size other than the header's would bypass the pixel limit checked on the header.
    if image is None or image.shape != (header.height, header.width) or _cut_short(data, header):
        raise ImageError(400, f"The {header.format} image is damaged or truncated.")
    return image


def encode_png(image: np.ndarray) -> bytes:
    # Level 1: a mask compresses well anyway, and Pillow's default level 6 takes longer
    # than the network's inference on a typical tile.
    return _encode(Image.fromarray(image), "PNG", compress_level=1)


def render_overlay(gray: np.ndarray, mask: np.ndarray, regions: list[Region]) -> tuple[bytes, str]:
    """The photo with defects tinted red and boxed; returns the bytes and their media type."""
    picture = np.repeat(gray[:, :, np.newaxis], 3, axis=2)
    defect = mask > 0
    picture[defect] = picture[defect] // 2 + np.array([127, 0, 0], np.uint8)
    image = Image.fromarray(picture)
    draw = ImageDraw.Draw(image)
    thickness = max(1, round(max(gray.shape) / 500))
    for region in regions:
        corner = (region.x + region.width - 1, region.y + region.height - 1)
        draw.rectangle([(region.x, region.y), corner], outline=(255, 255, 0), width=thickness)
    if max(gray.shape) > _JPEG_MAX_SIDE:  # JPEG cannot store it; PNG can
        return _encode(image, "PNG", compress_level=1), "image/png"
    return _encode(image, "JPEG", quality=90), "image/jpeg"


# libjpeg's JPEG_MAX_DIMENSION, not the 65,535 the format's 16-bit fields could hold: an
# overlay 65,501 to 65,535 pixels long was a 500.
_JPEG_MAX_SIDE = 65_500
# libpng's default limit on a side (PNG_USER_WIDTH_MAX/HEIGHT_MAX): most PNG readers
# refuse a longer one, so a client could not open the mask of a 1 x 1,000,001 BMP.
MAX_SIDE = 1_000_000
# Pillow modes that hold more than 8 bits per sample, as integers.
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")

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


def _to_gray(image: Image.Image) -> np.ndarray:
    """Luminance as uint8; samples wider than 8 bits keep their high byte."""
    if image.mode in _WIDE_MODES:
        return (np.asarray(image).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
    return np.asarray(image.convert("L"))


def _cut_short(data: bytes, header: ImageHeader) -> bool:
    """A PNG missing its end chunk: Pillow stops reading once it has the pixels."""
    if header.format != "PNG":
        return False
    end = data.rfind(b"IEND")
    return end < 0 or len(data) < end + 8


def _encode(image: Image.Image, image_format: str, **options: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


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
