"""The container image's contents, proven without a Docker engine.

The Dockerfile installs docker/serve.lock into an empty venv, then copies in service/
and the model and runs `python -m service` with its ENV settings. These tests do the
same here: the lock goes into a fresh venv (built once per lock, under the temp folder),
only service/ and the model are copied into an empty folder, and the server started
from there segments a real tile. Linting (hadolint) and static checks cover the rest of
the Dockerfiles, which only a Docker build can run (the deploy workflow does).
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from harness import REPO_ROOT
from harness.dockerfile import final_environment, final_user, instructions, runs_as_root
from harness.server import free_port
from harness.stand_in_model import build_stand_in_model
from scripts.lock_images import (
    CPU_LOCK,
    GPU_INPUT,
    GPU_LOCK,
    ONNXRUNTIME_GPU,
    SERVE_REQUIREMENTS,
    gpu_requirements,
)
from training.requirements import normalise, pinned_versions

DOCKERFILE = REPO_ROOT / "Dockerfile"
GPU_DOCKERFILE = REPO_ROOT / "docker/Dockerfile.gpu"
SMOKE_TEST = REPO_ROOT / "docker/smoke_test.py"
REAL_MODEL = REPO_ROOT / "models/segmenter.onnx"
TRAINING_PACKAGES = ("torch", "torchvision", "fastai", "dvc", "dvclive", "onnx", "onnxscript")
# The benchmark's goal. Measured 329 MB: OpenCV 152 (of it 81 of bundled libraries),
# onnxruntime 78, numpy 72, uvloop 14; the rest is small. (With Pillow and cc3d in place
# of OpenCV it was 215 MB.)
MAX_ENVIRONMENT_MB = 350
# Variables the test sets itself: the image's values point into the image's file system
# or bind every interface, which a test on a shared machine must not.
OWN_VARIABLES = ("PATH", "PYTHONPATH", "HOST", "PORT", "MODEL_PATH")


@pytest.fixture(scope="session")
def serving_env() -> Path:
    """A venv holding exactly docker/serve.lock, as the image's build stage makes it.

    Kept in the temp folder under the hash of the lock and the interpreter, so a test
    session (and CI's one run) pays for the install once and a changed lock gets a new one.
    """
    key = hashlib.sha256(
        (REPO_ROOT / CPU_LOCK).read_bytes() + f"{sys.version_info[:2]}{platform.machine()}".encode()
    ).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"tile-defects-serving-env-{key}"
    if (target / ".complete").is_file():
        return target
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}-", dir=target.parent))
    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", staging], check=True)
        # The image's pip sees no configuration; neither may this one (local wheel
        # folders or constraints on this machine would change what gets installed).
        # Only the network settings pass (a CA bundle, a timeout).
        keep = ("PIP_CERT", "PIP_DEFAULT_TIMEOUT")
        environment = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in keep}
        environment.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
        # The same command as the Dockerfile's build stage.
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(staging / "bin/python"),
                "install",
                "--quiet",
                "--no-deps",
                "--require-hashes",
                "--only-binary=:all:",
                "-r",
                str(REPO_ROOT / CPU_LOCK),
            ],
            check=True,
            env=environment,
            timeout=600,
        )
        (staging / ".complete").write_text("installed\n")
        try:
            staging.rename(target)
        except OSError:  # another session finished first: use its venv
            shutil.rmtree(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


@pytest.fixture(scope="session")
def image_settings() -> dict[str, str]:
    """The ENV of the Dockerfile's runtime stage, as a dict."""
    return final_environment(DOCKERFILE.read_text())


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """An empty folder with only what the image copies: service/ and the model."""
    app = tmp_path / "app"
    shutil.copytree(
        REPO_ROOT / "service", app / "service", ignore=shutil.ignore_patterns("__pycache__")
    )
    (app / "models").mkdir()
    if REAL_MODEL.is_file():
        shutil.copyfile(REAL_MODEL, app / "models/segmenter.onnx")
    else:  # before the pipeline has exported one
        build_stand_in_model(app / "models/segmenter.onnx")
    return app


@pytest.fixture
def real_tile(shared_data_dir: Path) -> Path:
    return sorted(shared_data_dir.glob("MT_Blowhole/Imgs/*.jpg"))[0]


def test_locks_pin_exactly_requirements_serve_txt() -> None:
    serve = (REPO_ROOT / SERVE_REQUIREMENTS).read_text()
    hint = "requirements/serve.txt changed: run `make lock-images`"
    serve_pins = pinned_versions(REPO_ROOT / SERVE_REQUIREMENTS)
    assert pinned_versions(REPO_ROOT / CPU_LOCK) == serve_pins, hint
    gpu = dict(serve_pins)
    del gpu["onnxruntime"]
    name, version = ONNXRUNTIME_GPU.split("==")
    gpu[name] = version
    assert pinned_versions(REPO_ROOT / GPU_LOCK) == gpu, hint
    assert (REPO_ROOT / GPU_INPUT).read_text() == gpu_requirements(serve), hint


@pytest.mark.parametrize("lock", [CPU_LOCK, GPU_LOCK], ids=str)
def test_every_locked_package_has_hashes(lock: Path) -> None:
    # pip --require-hashes refuses a requirement without one; say which, before a build.
    entries = re.split(r"\n(?=\S)", (REPO_ROOT / lock).read_text())
    requirements = [entry for entry in entries if "==" in entry and not entry.startswith("#")]
    assert len(requirements) == len(pinned_versions(REPO_ROOT / lock))
    for entry in requirements:
        assert "--hash=sha256:" in entry, entry.splitlines()[0]


def test_serving_env_holds_the_lock_and_no_training_package(serving_env: Path) -> None:
    listing = subprocess.run(
        [
            serving_env / "bin/python",
            "-c",
            "from importlib import metadata\n"
            "for d in metadata.distributions(): print(d.metadata['Name'], d.version)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    listed = dict(line.split() for line in listing.splitlines())
    installed = {normalise(name): version for name, version in listed.items()}
    assert installed == pinned_versions(REPO_ROOT / CPU_LOCK), "the venv differs from the lock"
    for name in TRAINING_PACKAGES:
        assert name not in installed
    du = subprocess.run(["du", "-sk", serving_env], capture_output=True, text=True, check=True)
    size_mb = int(du.stdout.split()[0]) / 1024
    print(f"\nserving environment: {size_mb:.0f} MB ({serving_env})")
    assert size_mb < MAX_ENVIRONMENT_MB, f"the serving environment grew to {size_mb:.0f} MB"


@pytest.mark.slow
def test_image_layout_serves_a_real_tile(
    serving_env: Path, app_dir: Path, image_settings: dict[str, str], real_tile: Path
) -> None:
    port = free_port()
    # Nothing from this environment but PATH and HOME: what the image sets, and no more.
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        **{k: v for k, v in image_settings.items() if k not in OWN_VARIABLES},
        "PYTHONPATH": str(app_dir),
        "MODEL_PATH": str(app_dir / "models/segmenter.onnx"),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "warning",
    }
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [serving_env / "bin/python", "-m", "service"],
            cwd=app_dir,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            # The deploy workflow's smoke test, run by the serving venv's own Python: it
            # waits for /ready, segments the tile, checks the mask's size and that no
            # training package can be imported.
            smoke = subprocess.run(
                [
                    serving_env / "bin/python",
                    SMOKE_TEST,
                    f"http://127.0.0.1:{port}",
                    real_tile,
                ],
                cwd=app_dir,
                env=environment,
                capture_output=True,
                text=True,
                timeout=120,
            )
        finally:
            server.send_signal(signal.SIGTERM)
            exit_code = server.wait(30)
            log.seek(0)
            server_log = log.read().decode(errors="replace")
    assert smoke.returncode == 0, f"{smoke.stdout}{smoke.stderr}\nserver log:\n{server_log}"
    assert smoke.stdout.startswith("ok:"), smoke.stdout
    assert exit_code == 0, server_log
    assert "Traceback" not in server_log, server_log


def test_image_settings_suit_a_small_dyno(image_settings: dict[str, str]) -> None:
    assert image_settings["HOST"] == "0.0.0.0"  # reachable from outside the container
    assert image_settings["PORT"] == "8000"  # the default; Heroku overrides it with $PORT
    assert image_settings["MODEL_PATH"] == "/app/models/segmenter.onnx"
    assert 1 <= int(image_settings["INFERENCE_THREADS"]) <= 2
    assert 1 <= int(image_settings["MAX_QUEUE"]) <= 8


@pytest.mark.parametrize("dockerfile", [DOCKERFILE, GPU_DOCKERFILE], ids=lambda p: p.name)
def test_dockerfile_shape(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    steps = instructions(text)
    bases = [args for op, args in steps if op == "FROM"]
    assert len(bases) >= 2, "multi-stage: a build stage and a runtime stage"
    base_image = next(args for op, args in steps if op == "ARG")
    assert re.search(r"@sha256:[0-9a-f]{64}$", base_image), "the base image is pinned by digest"
    install = " ".join(args for op, args in steps if op == "RUN" and "install" in args)
    assert "--require-hashes" in install and "--no-deps" in install
    copies = [args for op, args in steps if op == "COPY"]
    lock = GPU_LOCK if dockerfile == GPU_DOCKERFILE else CPU_LOCK
    assert any(args.startswith(str(lock)) for args in copies)
    assert "service/ /app/service/" in copies
    assert "models/segmenter.onnx /app/models/segmenter.onnx" in copies
    assert not runs_as_root(final_user(text)), "runs as a non-root user"
    assert steps[-1] == ("CMD", '["python", "-m", "service"]')


def test_heroku_builds_the_cpu_dockerfile() -> None:
    # Heroku's build context is the Dockerfile's own folder: the repository root, where the
    # COPY sources are.
    assert re.search(r"^\s+web:\s+Dockerfile\s*$", (REPO_ROOT / "heroku.yml").read_text(), re.M)


def test_dockerignore_admits_only_what_the_images_copy() -> None:
    lines = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    admitted = {line[1:] for line in lines if line.startswith("!")}
    assert admitted == {"docker/serve.lock", "docker/gpu.lock", "service/", "models/segmenter.onnx"}


@pytest.mark.parametrize("dockerfile", [DOCKERFILE, GPU_DOCKERFILE], ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    hadolint = _tool("hadolint")
    result = subprocess.run(
        [hadolint, "--no-color", dockerfile], capture_output=True, text=True, cwd=REPO_ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _tool(name: str) -> str:
    """A linter installed by requirements/dev.txt, found beside this interpreter first."""
    found = shutil.which(
        name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    )
    if not found:
        pytest.fail(f"{name} is not installed; run `make setup` (requirements/dev.txt)")
    return found
