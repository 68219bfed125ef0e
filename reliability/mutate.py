"""Byte-level damage, as bad cables, cut uploads and buggy cameras do it to image files.

Pure functions of their arguments, so a fuzzing run is reproduced from its seed.
"""

from __future__ import annotations

import random
import struct
import zlib

from reliability.corpus import jpeg_frame_offset

SIGNATURES = (
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"GIF89a",
    b"RIFF\x00\x00\x00\x00WEBP",
    b"%PDF-1.4",
    b"\x00\x00\x00\x0cjP  ",
)
INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)
INTERESTING_SIDES = (0, 1, 2, 255, 256, 4096, 30_000, 65_535, 65_536, 2**31 - 1, 2**32 - 1)


def truncate(data: bytes, keep: int) -> bytes:
    return data[: max(0, min(keep, len(data)))]


def flip_bits(data: bytes, positions: list[int]) -> bytes:
    """Flip one bit at each position (taken modulo the length, bit from the position)."""
    if not data:
        return data
    damaged = bytearray(data)
    for position in positions:
        damaged[position % len(damaged)] ^= 1 << (position % 8)
    return bytes(damaged)


def set_bytes(data: bytes, positions: list[int], value: int) -> bytes:
    if not data:
        return data
    damaged = bytearray(data)
    for position in positions:
        damaged[position % len(damaged)] = value
    return bytes(damaged)


def delete_slice(data: bytes, start: int, length: int) -> bytes:
    start = start % (len(data) or 1)
    return data[:start] + data[start + length :]


def duplicate_slice(data: bytes, start: int, length: int) -> bytes:
    start = start % (len(data) or 1)
    return data[: start + length] + data[start : start + length] + data[start + length :]


def insert_random(data: bytes, start: int, length: int, seed: int) -> bytes:
    start = start % (len(data) + 1)
    return data[:start] + random_bytes(length, seed) + data[start:]


def replace_magic(data: bytes, signature: bytes) -> bytes:
    """The same file behind another format's signature (or none: b"")."""
    own = next((s for s in SIGNATURES if data.startswith(s)), b"")
    return signature + data[len(own) :]


def random_bytes(length: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(length)


def patch_dimensions(data: bytes, width: int, height: int) -> bytes:
    """The file with its header's width and height rewritten; unchanged if not found.

    Values are wrapped into each format's field width, so every value is expressible.
    """
    patched = bytearray(data)
    try:
        if data.startswith(b"\x89PNG"):
            struct.pack_into(">II", patched, 16, width % 2**32, height % 2**32)
            # A matching checksum, so the decoder, not just the CRC check, meets the size.
            struct.pack_into(">I", patched, 29, zlib.crc32(bytes(patched[12:29])))
        elif data.startswith(b"\xff\xd8"):
            position = jpeg_frame_offset(data)
            struct.pack_into(">HH", patched, position + 5, height % 2**16, width % 2**16)
        elif data.startswith(b"BM"):
            struct.pack_into("<II", patched, 18, width % 2**32, height % 2**32)
        elif data.startswith((b"II*\x00", b"MM\x00*")):
            _patch_tiff_sides(patched, width, height)
    except (struct.error, ValueError, IndexError):
        return data
    return bytes(patched)


def _patch_tiff_sides(data: bytearray, width: int, height: int) -> None:
    order = "<" if data.startswith(b"II") else ">"
    (offset,) = struct.unpack_from(order + "I", data, 4)
    (count,) = struct.unpack_from(order + "H", data, offset)
    for index in range(min(count, 64)):
        entry = offset + 2 + 12 * index
        tag, kind = struct.unpack_from(order + "HH", data, entry)
        if tag in (256, 257):
            value = width if tag == 256 else height
            if kind == 3:
                struct.pack_into(order + "H", data, entry + 8, value % 2**16)
            else:
                struct.pack_into(order + "I", data, entry + 8, value % 2**32)
