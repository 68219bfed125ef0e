"""The project's Dockerfiles, read as Docker reads them: instructions, and what the last
stage (the image that runs) sets up, with ARG and ENV variables resolved.

The container tests and the reliability suite's security check both ask these questions
of the same files, so they read them one way.
"""

from __future__ import annotations

import re
import shlex

ROOT_USERS = ("", "root", "0")


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, argument) pairs: continuation lines joined with one space, comments
    and blank lines (also those inside a continued instruction) dropped."""
    logical, current = [], ""
    for line in dockerfile.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1].rstrip() + " "
            continue
        logical.append(current + stripped)
        current = ""
    if current:
        logical.append(current)
    pairs = []
    for text in logical:
        instruction, _, argument = text.partition(" ")
        pairs.append((instruction.upper(), argument.strip()))
    return pairs


def final_user(dockerfile: str) -> str | None:
    """The USER the last stage runs as, variables resolved; None if it sets none."""
    return _final_stage(dockerfile)[0]


def final_environment(dockerfile: str) -> dict[str, str]:
    """The variables the last stage's ENV instructions set, resolved; what the base image
    sets is unknown here, so `PATH=/opt/venv/bin:$PATH` reads as `/opt/venv/bin:`."""
    return _final_stage(dockerfile)[1]


def runs_as_root(user: str | None) -> bool:
    """Whether a stage with this USER runs as root (no USER: the base image's, root mostly)."""
    return user is None or user.split(":")[0].strip() in ROOT_USERS


def _final_stage(dockerfile: str) -> tuple[str | None, dict[str, str]]:
    """The last stage's USER and ENV settings, each value resolved where it is set."""
    variables: dict[str, str] = {}
    global_arguments: dict[str, str] = {}
    environment: dict[str, str] = {}
    user = None
    seen_from = False
    for instruction, argument in instructions(dockerfile):
        if instruction == "FROM":
            seen_from, user, environment = True, None, {}
            variables = dict(global_arguments)
        elif instruction == "ARG" and "=" not in argument:
            # `ARG NAME` in a stage brings in the global ARG's default.
            name = argument.strip()
            variables[name] = global_arguments.get(name, variables.get(name, ""))
        elif instruction in ("ARG", "ENV"):
            for name, value in _assignments(argument):
                resolved = _resolve(value, variables)
                variables[name] = resolved
                if instruction == "ENV":
                    environment[name] = resolved
                elif not seen_from:
                    global_arguments[name] = resolved
        elif instruction == "USER":
            user = _resolve(argument.strip(), variables)
    return user, environment


def _assignments(argument: str) -> list[tuple[str, str]]:
    """NAME=VALUE pairs of an ARG or ENV, quotes removed (also the old `ENV NAME VALUE`)."""
    if "=" not in argument.split(" ")[0]:
        name, _, value = argument.partition(" ")
        return [(name, value.strip().strip('"'))]
    pairs = [word.partition("=") for word in shlex.split(argument)]
    return [(name, value) for name, _, value in pairs]


def _resolve(value: str, variables: dict[str, str]) -> str:
    """`$NAME`, `${NAME}` and `${NAME:-default}` replaced as Docker does: unset is empty."""
    return re.sub(
        r"\$\{(\w+)(?::?-([^}]*))?\}|\$(\w+)",
        lambda m: variables.get(m.group(1) or m.group(3), m.group(2) or ""),
        value,
    )
