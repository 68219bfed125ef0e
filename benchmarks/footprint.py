"""Installed size of the serving environment against the peers' and the training one's.

The serving figure comes from a fresh virtual environment holding exactly
requirements/serve.txt, built as the image builds its own (a venv without pip, filled by
the pip outside it) and measured with `du`: the disk the image's venv layer takes. The
full run also starts the service from it, as a container would, and builds the BentoML
and plain FastAPI peers' venvs the same way (benchmarks/requirements-*.txt). Each is
cached under the cache folder with a hash of its requirements, so `--reuse-serve-venv`
skips the install when nothing changed. `--quick` builds none: it adds up the files that
serve.txt's packages installed into the running environment instead (their RECORD
lists), which is close but misses the venv's own files.

The original service's environment is what installing fastai, FastAPI and uvicorn brings
(torch, torchvision, Pillow and the rest of their requirements), added up from the
RECORD lists of those packages in the training venv, which holds them all.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

from harness import REPO_ROOT
from training.requirements import normalise, requirement_names

SERVE_REQUIREMENTS = REPO_ROOT / "requirements" / "serve.txt"
BENTOML_REQUIREMENTS = REPO_ROOT / "benchmarks" / "requirements-bentoml.txt"
FASTAPI_REQUIREMENTS = REPO_ROOT / "benchmarks" / "requirements-fastapi.txt"
TRAINING_VENV = REPO_ROOT / ".venv"
# What the original service's requirements install to serve (its training tools aside).
ORIGINAL_SERVING_PACKAGES = ("fastai", "fastapi", "uvicorn", "python-multipart")
VENV_METHOD = "fresh venv without pip, as in the image, with {}, du"


def measure(venvs: dict[str, tuple[Path, bool]]) -> dict[str, object]:
    """Sizes in MB (10**6 bytes): the serving venv and the peers' venvs when built (keyed
    "serving", "bentoml", "fastapi"), the original service's packages and the training env."""
    training_root = TRAINING_VENV if TRAINING_VENV.is_dir() else Path(sys.prefix)
    sizes: dict[str, dict[str, object]] = {}
    for name, (venv, reused) in venvs.items():
        sizes[name] = {
            "method": VENV_METHOD.format(_REQUIREMENTS[name].relative_to(REPO_ROOT)),
            "reused": reused,
            "mb": du_mb(venv),
            "largest_packages_mb": _largest(_site_packages(venv)),
        }
    if "serving" not in sizes:
        sizes["serving"] = {
            "method": "sum of serve.txt packages' installed files (RECORD), no fresh venv",
            "mb": records_mb(requirement_names(SERVE_REQUIREMENTS)),
        }
    original = requirement_closure(ORIGINAL_SERVING_PACKAGES)
    sizes["original"] = {
        "method": f"installed files (RECORD) of {', '.join(ORIGINAL_SERVING_PACKAGES)} and "
        f"all they require, {len(original)} packages, as the training venv has them",
        "mb": records_mb(original),
    }
    sizes["training"] = {"method": "the training venv (.venv), du", "mb": du_mb(training_root)}
    serving = sizes["serving"]["mb"]
    return {
        **sizes,
        "ratio": round(sizes["training"]["mb"] / serving, 1),
        "original_ratio": round(sizes["original"]["mb"] / serving, 1),
    }


def serving_venv(cache_dir: Path, reuse: bool) -> tuple[Path, bool]:
    """A venv with requirements/serve.txt installed; returns it and whether it was reused."""
    return cached_venv(cache_dir / "serving-venv", SERVE_REQUIREMENTS, reuse)


def peer_venv(cache_dir: Path, name: str, reuse: bool) -> tuple[Path, bool]:
    """The venv of a peer ("bentoml" or "fastapi"), as serving_venv builds its own."""
    return cached_venv(cache_dir / f"{name}-venv", _REQUIREMENTS[name], reuse)


def cached_venv(venv: Path, requirements: Path, reuse: bool) -> tuple[Path, bool]:
    """A venv without pip holding `requirements`, reused when `reuse` and it was built from
    the same requirements; returns it and whether it was reused."""
    stamp = venv / ".requirements.sha256"
    digest = _requirements_digest(requirements)
    if reuse and stamp.is_file() and stamp.read_text() == digest:
        return venv, True
    shutil.rmtree(venv, ignore_errors=True)
    for command in (
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        [
            *(sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")),
            *("install", "-r", str(requirements)),
        ],
    ):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    stamp.write_text(digest)
    return venv, False


def du_mb(path: Path) -> float:
    """Disk usage of `path` as `du` counts it, in MB."""
    output = subprocess.run(
        ["du", "-s", "--block-size=1", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return round(int(output.split()[0]) / 1e6, 1)


def requirement_closure(roots: tuple[str, ...]) -> list[str]:
    """Normalised names of the installed `roots` and of everything installed that they
    require here, their environment markers evaluated (extras not taken)."""
    seen: set[str] = set()
    pending = [normalise(name) for name in roots]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # a requirement pip skipped here; it takes no space
        seen.add(name)
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(normalise(requirement.name))
    return sorted(seen)


def records_mb(names: list[str]) -> float:
    total = 0
    for name in names:
        distribution = importlib.metadata.distribution(name)
        for file in distribution.files or []:
            located = Path(distribution.locate_file(file))
            if located.is_file():
                total += located.stat().st_size
    return round(total / 1e6, 1)


_REQUIREMENTS = {
    "serving": SERVE_REQUIREMENTS,
    "bentoml": BENTOML_REQUIREMENTS,
    "fastapi": FASTAPI_REQUIREMENTS,
}


def _requirements_digest(requirements: Path) -> str:
    """A hash of the file and of the files it includes, so that a change to either rebuilds."""
    digest = hashlib.sha256()
    for path in _with_includes(requirements):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _with_includes(requirements: Path) -> list[Path]:
    found = [requirements]
    for line in requirements.read_text().splitlines():
        words = line.split()
        if len(words) == 2 and words[0] in ("-r", "--requirement"):
            found += _with_includes(requirements.parent / words[1])
    return found


def _site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def _largest(site_packages: Path, count: int = 6) -> dict[str, float]:
    sizes = {
        entry.name: du_mb(entry)
        for entry in site_packages.iterdir()
        if entry.is_dir() and not entry.name.endswith((".dist-info", "__pycache__"))
    }
    return dict(sorted(sizes.items(), key=lambda item: -item[1])[:count])
