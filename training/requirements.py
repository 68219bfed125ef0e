"""Pip requirements files, read the way pip reads them.

The pipeline's package list (check_packages), the container locks (scripts/lock_images.py
and their tests) and the benchmark's footprint all ask which packages a requirements
file names. The one reader lives here, in training/, because a pipeline stage may import
nothing from the test kit, while the kit, the scripts and the benchmarks may import
training.
"""

from __future__ import annotations

import re
from pathlib import Path

from packaging.requirements import Requirement

_COMMENT = re.compile(r"(^|\s)#.*$")
_INCLUDE = re.compile(r"^(?:-r|--requirement)[\s=]*(\S+)$")
# Per-requirement options after the requirement itself, such as a lock's `--hash=...`.
_OPTIONS = re.compile(r"\s+--?[A-Za-z].*$")


def requirement_names(path: Path) -> list[str]:
    """Normalised names of the packages the file asks for on this machine, in file order."""
    return [normalise(requirement.name) for requirement in read_requirements(path)]


def pinned_versions(path: Path) -> dict[str, str]:
    """{normalised name: version} of the file's `name==version` requirements."""
    pins = {}
    for requirement in read_requirements(path):
        versions = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        if versions:
            pins[normalise(requirement.name)] = versions[0]
    return pins


def read_requirements(path: Path) -> list[Requirement]:
    """The requirements of a file that apply on this machine (their markers evaluated):
    backslash-continued lines joined, comments and options dropped, `-r` includes followed
    relative to the including file."""
    found: list[Requirement] = []
    for line in _logical_lines(path.read_text()):
        include = _INCLUDE.match(line)
        if include:
            found += read_requirements(path.parent / include.group(1))
        elif not line.startswith("-"):  # other options (-c, -e, --index-url) name no pin
            requirement = Requirement(_OPTIONS.sub("", line))
            if requirement.marker is None or requirement.marker.evaluate():
                found.append(requirement)
    return found


def normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them: `Typing_Extensions` -> `typing-extensions`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _logical_lines(text: str) -> list[str]:
    lines, current = [], ""
    for raw in text.splitlines():
        line = _COMMENT.sub("", raw).strip()
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        lines.append((current + line).strip())
        current = ""
    lines.append(current.strip())
    return [line for line in lines if line]
