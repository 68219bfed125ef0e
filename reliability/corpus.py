"""Images to send: real tile photos in every accepted format, and the odd files cameras make.

Everything is built in memory from the read-only dataset, with OpenCV and Pillow, so a
run needs no files of its own and the same seed gives the same corpus.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

CLASSES = ("Blowhole", "Break", "Crack", "Fray", "Free", "Uneven")


@dataclass(frozen=True)
class Sample:
    name: str
    data: bytes
    # Sent intact, the service must accept it (2xx); False: it must refuse it (4xx), as
    # forged headers and images past its limits.
    valid: bool = True


def tile_photos(data_dir: Path, count: int, seed: int) -> list[Path]:
    """`count` photos spread over the six classes, chosen with `seed`."""
    by_class = [sorted((data_dir / f"MT_{name}" / "Imgs").glob("*.jpg")) for name in CLASSES]
    if not all(by_class):
        raise FileNotFoundError(
            f"no tile photos under {data_dir}/MT_*/Imgs; set TILE_DATA_DIR to the dataset"
        )
    chooser = random.Random(seed)
    return [chooser.choice(by_class[i % len(by_class)]) for i in range(count)]


def seed_samples(data_dir: Path, count: int, seed: int) -> list[Sample]:
    """Real photos as the camera wrote them (JPEG), and re-encoded as PNG, TIFF and BMP."""
    samples = []
    for index, path in enumerate(tile_photos(data_dir, count, seed)):
        jpeg = path.read_bytes()
        samples.append(Sample(f"jpeg:{path.parent.parent.name}/{path.stem}", jpeg))
        gray = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
        extension = (".png", ".tiff", ".bmp")[index % 3]
        samples.append(Sample(f"{extension[1:]}:{path.stem}", encode(extension, gray)))
    return samples


def exotic_samples(tile: np.ndarray) -> list[Sample]:
    """Valid images of the kinds the issue names: 16-bit, alpha, palette, CMYK, 1x1, 1xN."""
    small = cv2.resize(tile, (96, 64), interpolation=cv2.INTER_AREA)
    colour = cv2.applyColorMap(small, cv2.COLORMAP_JET)  # BGR with real colour in it
    rgb = Image.fromarray(cv2.cvtColor(colour, cv2.COLOR_BGR2RGB))
    wide16 = (small.astype(np.uint16) * 257)[:, :, None].repeat(3, axis=2)
    builders: dict[str, Callable[[], bytes]] = {
        "png-gray16": lambda: encode(".png", small.astype(np.uint16) * 257),
        "png-rgb16": lambda: encode(".png", wide16),
        "png-rgba": lambda: _pil(rgb.convert("RGBA"), "PNG"),
        "png-gray-alpha": lambda: _pil(Image.fromarray(small).convert("LA"), "PNG"),
        "png-palette": lambda: _pil(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "png-palette-transparent": lambda: _pil(
            rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG", transparency=0
        ),
        "png-1bit": lambda: _pil(Image.fromarray(small).convert("1"), "PNG"),
        "jpeg-cmyk": lambda: _pil(rgb.convert("CMYK"), "JPEG"),
        "jpeg-progressive": lambda: _pil(rgb, "JPEG", progressive=True),
        "jpeg-colour-444": lambda: _pil(rgb, "JPEG", subsampling=0),
        "jpeg-exif-rotated": lambda: _pil(rgb, "JPEG", exif=_exif_orientation(6)),
        "tiff-gray16": lambda: encode(".tiff", small.astype(np.uint16) * 257),
        "tiff-cmyk": lambda: _pil(rgb.convert("CMYK"), "TIFF"),
        "tiff-rgba": lambda: _pil(rgb.convert("RGBA"), "TIFF"),
        "tiff-palette": lambda: _pil(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "TIFF"),
        "tiff-lzw": lambda: _pil(Image.fromarray(small), "TIFF", compression="tiff_lzw"),
        "tiff-deflate": lambda: _pil(
            Image.fromarray(small), "TIFF", compression="tiff_adobe_deflate"
        ),
        "tiff-packbits": lambda: _pil(Image.fromarray(small), "TIFF", compression="packbits"),
        "tiff-jpeg": lambda: _pil(rgb, "TIFF", compression="jpeg"),
        "tiff-multipage": lambda: _multipage_tiff(small),
        "bmp-1bit": lambda: _pil(Image.fromarray(small).convert("1"), "BMP"),
        "bmp-palette": lambda: _pil(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "BMP"),
        "bmp-rgb": lambda: _pil(rgb, "BMP"),
        "bmp-rgba": lambda: _pil(rgb.convert("RGBA"), "BMP"),
        "bmp-top-down": lambda: _top_down_bmp(_pil(Image.fromarray(small), "BMP")),
    }
    for width, height in [(1, 1), (1, 2), (2, 1), (1, 37), (37, 1), (1, 3000), (3000, 1)]:
        pixels = np.resize(small, (height, width))
        for extension in (".png", ".jpg", ".bmp", ".tiff"):
            name = f"{extension[1:]}-{width}x{height}"
            builders[name] = lambda p=pixels, e=extension: encode(e, p)
    return [Sample(name, build()) for name, build in builders.items()]


def side_limit_samples() -> list[Sample]:
    """Long thin images, at and just past the sides where encoders change or give up.

    libpng neither reads nor writes a side above 1,000,000 pixels, so the service does not
    return a PNG mask for one (most clients could not open it).
    """
    longest = 1_000_000
    row = np.full((1, longest + 1), 90, np.uint8)
    return [
        # Past libjpeg's 65,500: the overlay must switch to PNG.
        Sample("png-1x65501", encode(".png", row[:, :65_501])),
        Sample("bmp-65535x3", encode(".bmp", np.full((65_535, 3), 90, np.uint8))),
        Sample(f"bmp-1x{longest}", encode(".bmp", row[:, :longest])),
        Sample(f"tiff-{longest}x1", encode(".tiff", row[:, :longest].T)),
        Sample(f"bmp-1x{longest + 1}", encode(".bmp", row), False),
        Sample(f"tiff-{longest + 1}x1", encode(".tiff", row.T), False),
        Sample(f"png-1x{2**20 + 1}", _pil(Image.new("L", (2**20 + 1, 1), 90), "PNG"), False),
    ]


def forged_samples() -> list[Sample]:
    """Headers that declare zero, negative or huge sizes, with hardly any pixel data."""
    samples = []
    for width, height in [(0, 10), (10, 0), (0, 0), (60_000, 60_000), (2**31 - 1, 1)]:
        samples.append(
            Sample(f"png-declares-{width}x{height}", png_declaring(width, height), False)
        )
    for width, height in [(0, 10), (10, 0), (65_535, 65_535), (40_000, 40_000)]:
        samples.append(
            Sample(f"jpeg-declares-{width}x{height}", jpeg_declaring(width, height), False)
        )
    for width, height in [(-10, 10), (10, 0), (50_000, -50_000), (2**31 - 1, 2)]:
        samples.append(
            Sample(f"bmp-declares-{width}x{height}", bmp_declaring(width, height), False)
        )
    for width, height in [(0, 10), (70_000, 70_000)]:
        samples.append(
            Sample(f"tiff-declares-{width}x{height}", tiff_declaring(width, height), False)
        )
    return samples


def png_declaring(width: int, height: int, rows: int = 64) -> bytes:
    """A PNG whose header declares width x height, with the first `rows` rows of zeros.

    The zeros compress ~1000:1, so the file stays a few KB however large the declared size.
    """
    stride = 1 + max(width, 1)  # a filter byte and one 8-bit gray sample per pixel
    raw = b"\x00" * min(stride * rows, 8 * 1024 * 1024)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9))


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header is rewritten to declare width x height."""
    data = bytearray(encode(".jpg", np.full((16, 16), 128, np.uint8)))
    position = jpeg_frame_offset(bytes(data))
    struct.pack_into(">HH", data, position + 5, height, width)
    return bytes(data)


def bmp_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(".bmp", np.full((4, 4), 128, np.uint8)))
    struct.pack_into("<ii", data, 18, width, height)
    return bytes(data)


def tiff_declaring(width: int, height: int) -> bytes:
    """A little-endian TIFF with one deflated strip of zeros, declaring width x height."""
    strip = zlib.compress(b"\x00" * 65_536, 9)
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),  # bits per sample
        (259, 3, 1, 8),  # deflate
        (262, 3, 1, 1),  # black is zero
        (273, 4, 1, 8 + 2 + 12 * 9 + 4),  # strip offset: right after the directory
        (277, 3, 1, 1),  # samples per pixel
        (278, 4, 1, max(height, 1)),  # rows per strip
        (279, 4, 1, len(strip)),
    ]
    directory = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        packed = struct.pack("<H", value) + b"\x00\x00" if kind == 3 else struct.pack("<I", value)
        directory += struct.pack("<HHI", tag, kind, count) + packed
    return b"II*\x00" + struct.pack("<I", 8) + directory + b"\x00\x00\x00\x00" + strip


def encode(extension: str, image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(extension, image)
    if not ok:
        raise RuntimeError(f"OpenCV cannot encode {image.shape} {image.dtype} as {extension}")
    return encoded.tobytes()


def _pil(image: Image.Image, format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


def _exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def _multipage_tiff(gray: np.ndarray) -> bytes:
    first = Image.fromarray(gray)
    second = Image.fromarray(255 - gray)
    buffer = io.BytesIO()
    first.save(buffer, "TIFF", save_all=True, append_images=[second])
    return buffer.getvalue()


def _top_down_bmp(data: bytes) -> bytes:
    """The same bitmap with rows stored top-down (negative height), as some cameras write."""
    patched = bytearray(data)
    (height,) = struct.unpack_from("<i", patched, 22)
    struct.pack_into("<i", patched, 22, -height)
    return bytes(patched)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def jpeg_frame_offset(data: bytes) -> int:
    """Where the first JPEG frame header (SOFn) starts; raises ValueError if there is none."""
    position = 2
    while position + 4 <= len(data):
        marker = data[position + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return position
        (length,) = struct.unpack_from(">H", data, position + 2)
        position += 2 + length
    raise ValueError("no JPEG frame header")
