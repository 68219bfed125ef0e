"""DVC remote storage, round trip for real: `dvc push`, a fresh `git clone`, `dvc pull`,
and the clone's pipeline is up to date, against a local folder and an S3 server.

The S3 server is moto's, started on 127.0.0.1 by the test; the client is the real
dvc-s3 (s3fs, aiobotocore) that talks to AWS in production. Nothing may leave the
machine: fake credentials come from the environment, the instance-metadata lookup is
off, proxies are cleared, and path-style addressing keeps the bucket out of DNS.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.server import free_port
from harness.tools import TOOL_VARIABLES

BUCKET = "tile-defects-dvc"

# A pipeline shaped like the project's: a cached folder (data/raw), a cached file
# (models/checkpoint.pt) and a small output kept in git instead (models/model.onnx).
STAGE_SCRIPT = textwrap.dedent(
    """
    import hashlib, sys
    from pathlib import Path

    stage = sys.argv[1]
    if stage == "data":
        raw = Path("data/raw")
        raw.mkdir(parents=True, exist_ok=True)
        for index in range(3):
            (raw / f"tile{index}.bin").write_bytes(bytes([index]) * 4096)
    elif stage == "train":
        digest = hashlib.sha256()
        for path in sorted(Path("data/raw").iterdir()):
            digest.update(path.read_bytes())
        Path("models").mkdir(exist_ok=True)
        Path("models/checkpoint.pt").write_bytes(digest.digest() * 256)
    elif stage == "export":
        data = Path("models/checkpoint.pt").read_bytes()
        Path("models/model.onnx").write_bytes(data[:64])
    """
)
DVC_YAML = textwrap.dedent(
    """
    stages:
      data:
        cmd: python stage.py data
        deps: [stage.py]
        outs: [data/raw]
      train:
        cmd: python stage.py train
        deps: [stage.py, data/raw]
        outs: [models/checkpoint.pt]
      export:
        cmd: python stage.py export
        deps: [stage.py, models/checkpoint.pt]
        outs:
          - models/model.onnx:
              cache: false
    """
)


@pytest.fixture
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment in which DVC, git and botocore can only reach 127.0.0.1."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name.startswith("AWS_"):
            monkeypatch.delenv(name)
    aws_config = tmp_path / "aws_config"
    # Path-style requests go to the endpoint itself: no <bucket>.127.0.0.1 to look up.
    aws_config.write_text("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n")
    variables = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(aws_config),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no_credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        **TOOL_VARIABLES,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def s3_endpoint(isolated_environment: None) -> Iterator[str]:
    """moto's S3 server on a free loopback port, with an empty bucket."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()


def _run(cwd: Path, *command: str) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


def _project(path: Path, add_remote: Callable[[Path], None]) -> Path:
    """A git + DVC repository with the pipeline reproduced, committed and pushed."""
    path.mkdir()
    (path / "stage.py").write_text(STAGE_SCRIPT)
    (path / "dvc.yaml").write_text(DVC_YAML)
    _run(path, "git", "init", "-q")
    _run(path, "dvc", "init", "-q")
    _run(path, "dvc", "repro")
    add_remote(path)
    _run(path, "git", "add", "-A")
    _run(path, "git", "commit", "-qm", "pipeline and remote")
    _run(path, "dvc", "push")
    return path


def _assert_round_trip(origin: Path, tmp_path: Path) -> None:
    """A fresh clone pulls every cached output and finds the pipeline up to date."""
    assert "Cache and remote 'storage' are in sync" in _run(origin, "dvc", "status", "--cloud")
    clone = tmp_path / "clone"
    _run(tmp_path, "git", "clone", "-q", str(origin), str(clone))
    # Only the git-tracked output arrives with the clone; the cached ones need the remote.
    assert (clone / "models/model.onnx").is_file()
    assert not (clone / "models/checkpoint.pt").exists()
    assert not (clone / "data/raw").exists()
    assert not (clone / ".dvc/cache").exists()

    _run(clone, "dvc", "pull")

    for relative in ("models/checkpoint.pt", "data/raw/tile0.bin", "data/raw/tile2.bin"):
        assert (clone / relative).read_bytes() == (origin / relative).read_bytes(), relative
    assert "Data and pipelines are up to date" in _run(clone, "dvc", "status")
    repro = _run(clone, "dvc", "repro")
    assert "Running stage" not in repro, repro
    assert "didn't change, skipping" in repro


@pytest.mark.slow
def test_round_trip_through_a_local_folder_remote(
    tmp_path: Path, isolated_environment: None
) -> None:
    storage = tmp_path / "storage"

    def add_remote(repo: Path) -> None:
        # An absolute path: a relative one is resolved from .dvc/ and moves with the clone.
        _run(repo, "dvc", "remote", "add", "-d", "storage", str(storage))

    origin = _project(tmp_path / "origin", add_remote)
    assert any(path.is_file() for path in storage.rglob("*")), "dvc push stored nothing"
    _assert_round_trip(origin, tmp_path)


@pytest.mark.slow
def test_round_trip_through_an_s3_remote(tmp_path: Path, s3_endpoint: str) -> None:
    import boto3

    def add_remote(repo: Path) -> None:
        _run(repo, "dvc", "remote", "add", "-d", "storage", f"s3://{BUCKET}/store")
        _run(repo, "dvc", "remote", "modify", "storage", "endpointurl", s3_endpoint)
        _run(repo, "dvc", "remote", "modify", "storage", "region", "us-east-1")

    origin = _project(tmp_path / "origin", add_remote)
    listing = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=BUCKET)
    keys = [item["Key"] for item in listing.get("Contents", [])]
    # Three data files, the checkpoint and the folder's listing (.dir); model.onnx is in git.
    assert len(keys) == 5, keys
    assert all(key.startswith("store/files/md5/") for key in keys), keys
    _assert_round_trip(origin, tmp_path)
