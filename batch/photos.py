"""Which photos a run scores, from a folder, a glob or a text file listing them, and each
photo's bytes.

Every photo gets a name: its path relative to the input's root (the folder; for a glob or
a list, the deepest folder holding every photo). The pictures written for it mirror that
path under --out, so two photos never share a picture and none lands outside --out.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

# What a folder is searched for; a glob or a list names its files itself.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})


class InputError(ValueError):
    """The input names no photos the command can score."""


class PhotoError(ValueError):
    """A photo's file cannot be read; the message is its results line's error."""


@dataclass(frozen=True)
class Photo:
    photo: str  # how the results name it: the path as given, or as the folder or glob found it
    name: str  # its path relative to the input's root, with "/": names its pictures
    source: str  # what to read: a local path, or an object-store URI (Ray engine)


def is_uri(text: str) -> bool:
    """Whether `text` names an object-store location (s3://bucket/key) rather than a path."""
    return _URI.match(text) is not None


# A URI scheme (RFC 3986) of two letters or more, so that C://photos stays a path.
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+://")


def find_photos(given: str, out: Path) -> list[Photo]:
    """The photos that `given` names, in its order (a folder or a glob: sorted); files
    under `out` are left out, so results written inside the input are never rescored."""
    path = Path(given)
    if path.is_dir():
        return _unique(_in_folder(path, out), path)
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        return _unique([(given, path)], None)
    if path.is_file():
        return _unique(_listed(path), None)
    if glob.has_magic(given):
        matches = sorted(glob.glob(given, recursive=True))
        inside = [(m, Path(m)) for m in matches if Path(m).is_file() and not _under(m, out)]
        if inside:
            return _unique(inside, None)
        raise InputError(f"The pattern {given!r} matches no files.")
    raise InputError(f"{given} is not a folder, a glob, a photo or a file listing photos.")


def read_photo(source: str, max_bytes: int) -> bytes:
    """A local photo's bytes; raises PhotoError when it cannot be read or passes
    `max_bytes` (the service's MAX_BODY_BYTES)."""
    try:
        with open(source, "rb") as file:
            data = file.read(max_bytes + 1)
    except OSError as error:
        raise PhotoError(f"The photo could not be read: {error.strerror or error}.") from None
    return check_size(data, max_bytes)


def check_size(data: bytes, max_bytes: int) -> bytes:
    """`data`, read up to one byte past `max_bytes`, unless that byte was there."""
    if len(data) > max_bytes:
        raise PhotoError(f"The file is larger than the limit of {max_bytes} bytes.")
    return data


def _in_folder(folder: Path, out: Path) -> list[tuple[str, Path]]:
    found = []
    for directory, subdirectories, files in os.walk(folder):
        subdirectories[:] = sorted(d for d in subdirectories if not _under(Path(directory, d), out))
        found += [
            (os.path.join(directory, name), Path(directory, name))
            for name in sorted(files)
            if Path(name).suffix.lower() in IMAGE_SUFFIXES
        ]
    if not found:
        raise InputError(f"The folder {folder} holds no JPEG, PNG, BMP or TIFF files.")
    return found


def _listed(listing: Path) -> list[tuple[str, Path]]:
    """The photos a text file lists, one path a line; relative ones are read from the
    list's own folder, so that the list works from any working directory."""
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"The list {listing} could not be read as text ({error}).") from None
    entries = [line.strip() for line in lines if line.strip()]
    if not entries:
        raise InputError(f"The list {listing} names no photos.")
    return [(entry, listing.parent / entry) for entry in entries]


def _unique(found: list[tuple[str, Path]], root: Path | None) -> list[Photo]:
    """Photos named relative to `root`, else to the deepest folder holding them all; a
    file given twice (a.jpg, ./a.jpg) is scored once."""
    absolute = [os.path.abspath(path) for _, path in found]
    folders = [os.path.dirname(path) for path in absolute]
    base = os.path.abspath(root) if root else os.path.commonpath(folders)
    photos: dict[str, Photo] = {}
    for (given, _), path in zip(found, absolute, strict=True):
        name = Path(os.path.relpath(path, base)).as_posix()
        photos.setdefault(name, Photo(photo=given, name=name, source=path))
    return list(photos.values())


def _under(path: str | Path, folder: Path) -> bool:
    return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(folder))
