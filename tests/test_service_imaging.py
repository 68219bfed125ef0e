"""Header parsing and decoding, in process: each format, size and damage the API meets."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterable

import cv2
import numpy as np
import pytest

from service.imaging import ImageError, ImageHeader, decode_gray, read_header, render_overlay
from service.regions import Region, Segmentation

pytest_plugins = ["tests.service_fixtures"]

LIMIT = 25_000_000


def encode(extension: str, image: np.ndarray, params: Iterable[int] = ()) -> bytes:
    ok, encoded = cv2.imencode(extension, image, list(params))
    assert ok, f"OpenCV could not write {extension}"
    return encoded.tobytes()


def png_bytes(
    width: int,
    height: int,
    color_type: int,
    rows: bytes = b"",
    palette: bytes | None = None,
) -> bytes:
    """A hand-made 8-bit PNG: any IHDR, with `rows` (filter byte included) as pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        checksum = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", checksum)

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    chunks = [chunk(b"IHDR", header)]
    if palette is not None:
        chunks.append(chunk(b"PLTE", palette))
    chunks += [chunk(b"IDAT", zlib.compress(rows)), chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def palette_png(gray: np.ndarray) -> bytes:
    """`gray` as a palette PNG whose entry i is the colour (i, i, i)."""
    palette = bytes(np.repeat(np.arange(256, dtype=np.uint8), 3))
    rows = b"".join(b"\x00" + row.tobytes() for row in gray)
    return png_bytes(gray.shape[1], gray.shape[0], 3, rows, palette)


def big_endian_tiff(gray: np.ndarray) -> bytes:
    """`gray` as an uncompressed big-endian ("MM") TIFF, which OpenCV does not write."""
    height, width = gray.shape
    entries = [  # tag, type (3 SHORT, 4 LONG), value
        (256, 4, width),
        (257, 4, height),
        (258, 3, 8),  # bits per sample
        (259, 3, 1),  # no compression
        (262, 3, 1),  # black is zero
        (273, 4, 8 + 2 + 12 * 9 + 4),  # the pixels follow the directory
        (277, 3, 1),  # samples per pixel
        (278, 4, height),  # rows per strip
        (279, 4, gray.size),
    ]
    directory = struct.pack(">H", len(entries))
    for tag, kind, value in entries:
        packed = struct.pack(">HH", value, 0) if kind == 3 else struct.pack(">I", value)
        directory += struct.pack(">HHI", tag, kind, 1) + packed
    return b"MM\x00*" + struct.pack(">I", 8) + directory + b"\x00" * 4 + gray.tobytes()


def gradient(height: int, width: int) -> np.ndarray:
    return (np.add.outer(np.arange(height), np.arange(width)) % 256).astype(np.uint8)


def header_of(data: bytes) -> ImageHeader:
    return read_header(data, LIMIT)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (encode(".png", gradient(7, 5)), ImageHeader("PNG", 5, 7)),
        (encode(".jpg", gradient(7, 5)), ImageHeader("JPEG", 5, 7)),
        (
            encode(".jpg", gradient(300, 200), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
            ImageHeader("JPEG", 200, 300),
        ),
        (encode(".bmp", gradient(7, 5)), ImageHeader("BMP", 5, 7)),
        (encode(".bmp", np.dstack([gradient(7, 5)] * 3)), ImageHeader("BMP", 5, 7)),
        (encode(".tiff", gradient(7, 5)), ImageHeader("TIFF", 5, 7)),
        (encode(".tiff", gradient(70000, 1)), ImageHeader("TIFF", 1, 70000)),
        (big_endian_tiff(gradient(7, 5)), ImageHeader("TIFF", 5, 7)),
        (png_bytes(50_000, 50_000, 0), None),
    ],
    ids=[
        "png",
        "jpeg",
        "progressive-jpeg",
        "bmp",
        "bmp-colour",
        "tiff",
        "tiff-long",
        "tiff-mm",
        "bomb",
    ],
)
def test_read_header_reports_the_declared_size(data: bytes, expected: ImageHeader | None) -> None:
    if expected is None:
        assert read_header(data, 50_000 * 50_000) == ImageHeader("PNG", 50_000, 50_000)
    else:
        assert header_of(data) == expected


def test_read_header_handles_top_down_and_os2_bitmaps() -> None:
    bitmap = bytearray(encode(".bmp", gradient(7, 5)))
    struct.pack_into("<i", bitmap, 22, -7)  # rows stored top-down
    assert header_of(bytes(bitmap)) == ImageHeader("BMP", 5, 7)
    core = b"BM" + b"\x00" * 12 + struct.pack("<IHHHH", 12, 5, 7, 1, 8)
    assert header_of(core) == ImageHeader("BMP", 5, 7)


def test_read_header_refuses_more_pixels_than_the_limit_before_decoding() -> None:
    bomb = png_bytes(50_000, 50_000, 0)
    with pytest.raises(ImageError, match="50000 x 50000") as caught:
        header_of(bomb)
    assert caught.value.status_code == 413
    assert read_header(encode(".png", gradient(10, 10)), 100).width == 10  # the limit is inclusive
    with pytest.raises(ImageError):
        read_header(encode(".png", gradient(10, 11)), 100)


@pytest.mark.parametrize(
    "data",
    [b"", b"hello world", b"GIF89a" + b"\x00" * 20, b"RIFF\x00\x00\x00\x00WEBPVP8 "],
    ids=["empty", "text", "gif", "webp"],
)
def test_read_header_refuses_unknown_formats_with_415(data: bytes) -> None:
    with pytest.raises(ImageError, match="not a JPEG, PNG, BMP or TIFF") as caught:
        header_of(data)
    assert caught.value.status_code == 415


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00",
        png_bytes(0, 5, 0),
        b"\xff\xd8\xff\xe0\x00\x10JFIF",
        b"\xff\xd8\xff\xda\x00\x08",
        b"\xff\xd8" + b"\xff\xe0\x00\x02" * 100_000,
        b"BM\x00\x00",
        b"II*\x00\xff\xff\x00\x00",
        b"MM\x00*\x00\x00\x00\x08\x00\x00",
    ],
    ids=[
        "png-cut",
        "png-zero",
        "jpeg-cut",
        "jpeg-no-frame",
        "jpeg-endless-segments",
        "bmp-cut",
        "tiff-bad-offset",
        "tiff-no-size",
    ],
)
def test_read_header_refuses_damaged_headers_with_400(data: bytes) -> None:
    with pytest.raises(ImageError, match="header is damaged") as caught:
        header_of(data)
    assert caught.value.status_code == 400


def test_sixteen_bit_samples_keep_their_high_byte() -> None:
    deep = np.full((4, 6), 0x12FF, np.uint16)
    for extension in (".png", ".tiff"):
        data = encode(extension, deep)
        gray = decode_gray(data, header_of(data))
        assert gray.dtype == np.uint8 and gray.shape == (4, 6)
        assert np.all(gray == 0x12), extension


def test_colour_alpha_and_palette_become_luminance() -> None:
    gray = gradient(9, 13)
    colour = np.dstack([gray] * 3)
    alpha = np.dstack([gray, gray, gray, np.zeros_like(gray)])  # fully transparent
    for data in (encode(".png", colour), encode(".png", alpha), palette_png(gray)):
        decoded = decode_gray(data, header_of(data))
        assert decoded.ndim == 2 and np.array_equal(decoded, gray)


def test_big_endian_tiff_decodes() -> None:
    gray = gradient(9, 13)
    data = big_endian_tiff(gray)
    assert np.array_equal(decode_gray(data, header_of(data)), gray)


def test_exif_orientation_is_ignored_so_the_mask_matches_the_stored_pixels() -> None:
    jpeg = encode(".jpg", gradient(10, 30))
    # An APP1 segment saying "rotate 90 degrees to display" (orientation 6).
    exif = b"Exif\x00\x00MM\x00*" + struct.pack(">IHHHIHHI", 8, 1, 0x0112, 3, 1, 6, 0, 0)
    rotated = jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + jpeg[2:]
    assert cv2.imdecode(np.frombuffer(rotated, np.uint8), cv2.IMREAD_GRAYSCALE).shape == (30, 10)
    assert decode_gray(rotated, header_of(rotated)).shape == (10, 30)


def truncations(data: bytes) -> list[bytes]:
    """`data` cut in the middle, and missing only its last two bytes."""
    return [data[: len(data) // 2], data[:-2]]


@pytest.mark.parametrize(
    "make",
    [
        lambda tile: encode(".jpg", tile),
        lambda tile: encode(".jpg", tile, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        lambda tile: encode(".png", tile),
        lambda tile: encode(".tiff", tile),  # directory after the pixels
        lambda tile: encode(".tiff", tile, [cv2.IMWRITE_TIFF_COMPRESSION, 1]),
        big_endian_tiff,  # directory before the pixels
        lambda tile: encode(".bmp", tile),
    ],
    ids=["jpeg", "progressive-jpeg", "png", "tiff", "tiff-uncompressed", "tiff-mm", "bmp"],
)
def test_truncated_images_are_refused(
    tile: np.ndarray, make: Callable[[np.ndarray], bytes]
) -> None:
    data = make(tile)
    assert decode_gray(data, header_of(data)).shape == tile.shape  # whole, it decodes
    for cut in truncations(data):
        with pytest.raises(ImageError, match="damaged or truncated") as caught:
            decode_gray(cut, header_of(data))
        assert caught.value.status_code == 400


def test_a_png_missing_its_end_chunk_is_refused(tile: np.ndarray) -> None:
    data = encode(".png", tile)
    assert data.endswith(b"IEND\xaeB`\x82")
    with pytest.raises(ImageError, match="damaged or truncated"):
        decode_gray(data[:-12], header_of(data))


@pytest.mark.parametrize(
    ("extension", "params"),
    [(".tiff", []), (".tiff", [cv2.IMWRITE_TIFF_COMPRESSION, 1]), (".bmp", [])],
    ids=["tiff", "tiff-uncompressed", "bmp"],
)
def test_opencv_itself_refuses_truncated_tiff_and_bmp(
    tile: np.ndarray, extension: str, params: list[int]
) -> None:
    # Pins OpenCV's behaviour: the service has no end check of its own for these formats
    # (libtiff reports a short strip or directory as an error, the BMP reader runs out of
    # input), so an upgrade that fills the rest instead must not pass unnoticed.
    data = encode(extension, tile, params)
    for cut in [*truncations(data), data[:-1]]:
        try:
            decoded = cv2.imdecode(np.frombuffer(cut, np.uint8), cv2.IMREAD_UNCHANGED)
        except cv2.error:
            decoded = None
        assert decoded is None, f"OpenCV decoded a {extension} missing {len(data) - len(cut)} B"


def test_a_cut_jpeg_is_refused_despite_a_thumbnail_end_marker(tile: np.ndarray) -> None:
    # An Exif thumbnail is a whole JPEG, end marker included, ahead of the photo's scan.
    thumbnail = encode(".jpg", tile[:16, :16])
    app1 = b"Exif\x00\x00" + thumbnail
    photo = encode(".jpg", tile)
    data = photo[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + photo[2:]
    assert np.array_equal(decode_gray(data, header_of(data)), decode_gray(photo, header_of(photo)))
    with pytest.raises(ImageError, match="damaged or truncated"):
        decode_gray(data[: len(data) - len(photo) // 2], header_of(data))


def test_bytes_after_a_jpeg_end_marker_are_ignored(tile: np.ndarray) -> None:
    # Some cameras append data after the image; only a missing end marker means a cut.
    data = encode(".jpg", tile) + b"trailing camera data"
    assert np.array_equal(
        decode_gray(data, header_of(data)), decode_gray(data[:-20], header_of(data))
    )


def test_samples_wider_than_sixteen_bits_are_refused() -> None:
    data = encode(".tiff", np.full((4, 6), 0.5, np.float32))
    with pytest.raises(ImageError, match="float32 samples") as caught:
        decode_gray(data, header_of(data))
    assert caught.value.status_code == 415


def segmentation_of(mask: np.ndarray, regions: list[Region], score: float) -> Segmentation:
    """A segmentation whose `min_area`-th highest probability, its score, is `score`."""
    probability = np.where(mask > 0, np.float32(score), np.float32(0))
    return Segmentation(
        probability,
        mask,
        labels=(mask > 0).astype(np.uint8),
        score=score,
        defective=score >= 0.7,
        threshold=0.7,
        decision_threshold=0.7,
        regions_threshold=0.7,
        min_area=1,
        regions=regions,
    )


def test_overlay_is_a_colour_picture_of_the_photo() -> None:
    gray = np.full((400, 300), 200, np.uint8)
    mask = np.zeros_like(gray)
    mask[200:260, 100:160] = 255
    region = Region(100, 200, 60, 60, 3600, 0.9)
    picture, media_type = render_overlay(gray, segmentation_of(mask, [region], 0.9))
    decoded = cv2.imdecode(np.frombuffer(picture, np.uint8), cv2.IMREAD_COLOR)
    assert media_type == "image/jpeg" and decoded.shape == (400, 300, 3)
    blue, green, red = decoded[230, 130].astype(int)
    assert red > green + 50 and red > blue + 50  # defects are tinted red
    _, green, red = decoded[200, 130].astype(int)
    assert red > 150 and green > 150  # and outlined in yellow, not just red
    assert abs(int(decoded[380, 280, 2]) - 200) < 10  # the rest is left as it was
    assert decoded[:10, :100].mean() < 120  # the banner: a dark band of text at the top


def test_overlay_of_a_clean_tile_says_so() -> None:
    gray = np.full((400, 300), 200, np.uint8)
    clean = np.zeros_like(gray)
    picture, _ = render_overlay(gray, segmentation_of(clean, [], 0.12))
    decoded = cv2.imdecode(np.frombuffer(picture, np.uint8), cv2.IMREAD_COLOR)
    band = decoded[:14, :100].astype(int)
    # A dark band with green text, and no red anywhere.
    assert band.mean() < 120 and (band[..., 1] - band[..., 2] > 50).any()
    assert not (decoded[..., 2].astype(int) - decoded[..., 1] > 50).any()


def test_overlay_too_long_for_jpeg_is_a_png() -> None:
    strip = np.zeros((70_000, 1), np.uint8)
    picture, media_type = render_overlay(strip, segmentation_of(strip, [], 0.0))
    assert media_type == "image/png"
    assert cv2.imdecode(np.frombuffer(picture, np.uint8), cv2.IMREAD_COLOR).shape == (70_000, 1, 3)
