"""Installed size of the serving environment against the training environment.

The serving figure comes from a fresh virtual environment holding exactly
requirements/serve.txt, built as the image builds its own (a venv without pip, filled by
the pip outside it) and measured with `du`: the disk the image's venv layer takes. The
full run also starts the service from it, as a container would. It is cached under the
cache folder with a hash of serve.txt, so `--reuse-serve-venv` skips the install when
nothing changed. `--quick` does not build it: it adds up the files that serve.txt's
packages installed into the running environment instead (their RECORD lists), which is
close but misses the venv's own files.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

from service.contract import file_sha256
from training.requirements import requirement_names

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVE_REQUIREMENTS = REPO_ROOT / "requirements" / "serve.txt"
TRAINING_VENV = REPO_ROOT / ".venv"


def measure(venv: Path | None, reused: bool = False) -> dict[str, object]:
    """Sizes in MB (10**6 bytes) of the serving venv (when built) and the training env."""
    training_root = TRAINING_VENV if TRAINING_VENV.is_dir() else Path(sys.prefix)
    training = {"path": str(training_root), "mb": du_mb(training_root)}
    if venv is not None:
        serving = {
            "method": "fresh venv without pip, as in the image, with requirements/serve.txt, du",
            "path": str(venv),
            "reused": reused,
            "mb": du_mb(venv),
            "largest_packages_mb": _largest(_site_packages(venv)),
        }
    else:
        serving = {
            "method": "sum of serve.txt packages' installed files (RECORD), no fresh venv",
            "mb": records_mb(requirement_names(SERVE_REQUIREMENTS)),
        }
    return {
        "serving": serving,
        "training": training,
        "ratio": round(training["mb"] / serving["mb"], 1),
    }


def serving_venv(cache_dir: Path, reuse: bool) -> tuple[Path, bool]:
    """A venv with requirements/serve.txt installed; returns it and whether it was reused."""
    venv = cache_dir / "serving-venv"
    stamp = venv / ".serve-requirements.sha256"
    digest = file_sha256(SERVE_REQUIREMENTS)
    if reuse and stamp.is_file() and stamp.read_text() == digest:
        return venv, True
    shutil.rmtree(venv, ignore_errors=True)
    for command in (
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        [
            *(sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")),
            *("install", "-r", str(SERVE_REQUIREMENTS)),
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


def records_mb(names: list[str]) -> float:
    total = 0
    for name in names:
        distribution = importlib.metadata.distribution(name)
        for file in distribution.files or []:
            located = Path(distribution.locate_file(file))
            if located.is_file():
                total += located.stat().st_size
    return round(total / 1e6, 1)


def _site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def _largest(site_packages: Path, count: int = 6) -> dict[str, float]:
    sizes = {
        entry.name: du_mb(entry)
        for entry in site_packages.iterdir()
        if entry.is_dir() and not entry.name.endswith((".dist-info", "__pycache__"))
    }
    return dict(sorted(sizes.items(), key=lambda item: -item[1])[:count])
