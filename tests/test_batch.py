"""`python -m batch` end to end, as a user runs it: real tiles, real processes.

Its results must be what the API answers for the same photos; a run killed with SIGKILL
and started again must end as an uninterrupted run ends; photos the service refuses are
lines with their error; the Ray engine must give the local engine's results.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from harness import REPO_ROOT
from harness.dataset import CLASSES
from harness.server import service_environment

pytest_plugins = ["tests.service_fixtures"]
pytestmark = pytest.mark.slow  # real processes: the command, a server, a Ray cluster

# Keys of an API answer that describe the request rather than the photo.
API_ONLY = {"timings_ms"}


def run_batch(*args: str | Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batch", *map(str, args)],
        cwd=REPO_ROOT,
        env=service_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def copy_tiles(shared_data_dir: Path, dest: Path, per_class: int) -> list[Path]:
    """The first `per_class` photos of each class, copied to dest/MT_<Class>/."""
    copied = []
    for name in CLASSES:
        (dest / f"MT_{name}").mkdir(parents=True)
        for photo in sorted((shared_data_dir / f"MT_{name}" / "Imgs").glob("*.jpg"))[:per_class]:
            copied.append(Path(shutil.copy(photo, dest / f"MT_{name}" / photo.name)))
    return copied


def results(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def pictures(out: Path) -> dict[str, bytes]:
    """Every picture under `out`, by its path there."""
    return {
        path.relative_to(out).as_posix(): path.read_bytes()
        for folder in ("masks", "labels", "overlays")
        for path in (out / folder).rglob("*")
        if path.is_file()
    }


def forged_png(width: int, height: int) -> bytes:
    """A small PNG whose header declares `width` x `height` pixels, checksum included."""
    png = bytearray(cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes())
    struct.pack_into(">II", png, 16, width, height)
    struct.pack_into(">I", png, 29, zlib.crc32(bytes(png[12:29])))
    return bytes(png)


def test_results_are_the_apis_answers(
    client: httpx.Client, model_path: Path, shared_data_dir: Path, tmp_path: Path
) -> None:
    photos = copy_tiles(shared_data_dir, tmp_path / "tiles", per_class=5)
    out = tmp_path / "out"
    done = run_batch(
        tmp_path / "tiles", "--out", out, "--model", model_path, "--labels", "--overlay"
    )
    assert done.returncode == 0, done.stderr
    lines = {line["photo"]: line for line in results(out)}
    assert len(photos) == 30 and sorted(lines) == sorted(str(photo) for photo in photos)
    sha256 = client.get("/info").json()["model"]["sha256"]
    for photo in photos:
        line = lines[str(photo)]
        data = {"image": photo.read_bytes()}
        answer = client.post("/segment?format=json", files=data).json()
        shared = (set(answer) & set(line)) - API_ONLY
        assert {"defective", "score", "decision_threshold", "regions", "model_version"} <= shared
        assert {key: line[key] for key in shared} == {key: answer[key] for key in shared}, photo
        assert line["error"] is None and line["model_sha256"] == sha256
        for kind in ("mask", "labels", "overlay"):  # each picture is the API's, byte for byte
            expected = client.post(f"/segment?format={kind}", files=data).content
            assert (out / line["files"][kind]).read_bytes() == expected, f"{kind} of {photo}"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["photos"] == summary["scored"] == 30 and summary["failed"] == 0
    assert summary["defective"] == sum(line["defective"] for line in lines.values())


def test_a_killed_run_resumes_where_it_stopped(
    model_path: Path, shared_data_dir: Path, tmp_path: Path
) -> None:
    copy_tiles(shared_data_dir, tmp_path / "tiles", per_class=10)
    # A list of photos, relative to the list's own folder: the third way to name them.
    listing = tmp_path / "photos.txt"
    names = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("tiles/*/*.jpg"))
    listing.write_text("\n".join(names) + "\n")
    arguments = (listing, "--model", model_path, "--overlay")

    whole = tmp_path / "uninterrupted"
    assert run_batch(*arguments, "--out", whole).returncode == 0

    out = tmp_path / "interrupted"
    command = [sys.executable, "-m", "batch", *map(str, arguments), "--out", str(out)]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=service_environment(), stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while _whole_lines(out) < 10 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(10) == -signal.SIGKILL, "the run ended before it could be killed"
    finished = _whole_lines(out)
    assert 10 <= finished < len(names)
    for name, data in pictures(out).items():  # pictures are whole, or not there at all
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is not None, name
    with (out / "results.jsonl").open("a") as file:
        file.write('{"photo": "tiles/MT_Free/')  # as if the kill had cut a line short

    resumed = run_batch(*arguments, "--out", out)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["scored"], summary["already_done"]) == (len(names) - finished, finished)
    assert (out / "results.jsonl").read_bytes() == (whole / "results.jsonl").read_bytes()
    assert pictures(out) == pictures(whole)
    assert [line["photo"] for line in results(out)] == names
    assert not (out / ".partial").exists()


def _whole_lines(out: Path) -> int:
    try:
        return (out / "results.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_refused_photos_are_lines_with_their_error(
    model_path: Path, shared_data_dir: Path, tmp_path: Path
) -> None:
    photos = copy_tiles(shared_data_dir, tmp_path / "tiles", per_class=1)
    tile = photos[0].read_bytes()
    (tmp_path / "tiles" / "cut.jpg").write_bytes(tile[: len(tile) // 2])
    (tmp_path / "tiles" / "huge.png").write_bytes(forged_png(70_000, 70_000))
    (tmp_path / "tiles" / "notes.txt").write_text("not a photo, and not searched for")
    out = tmp_path / "out"
    done = run_batch(tmp_path / "tiles", "--out", out, "--model", model_path)
    assert done.returncode == 1, done.stderr
    lines = {Path(line["photo"]).name: line for line in results(out)}
    assert len(lines) == len(photos) + 2
    assert lines["cut.jpg"]["error"] == "The JPEG image is damaged or truncated."
    assert "the limit is 25000000 pixels" in lines["huge.png"]["error"]
    for name in ("cut.jpg", "huge.png"):
        assert lines[name]["files"] == {} and "defective" not in lines[name]
    assert all(lines[photo.name]["error"] is None for photo in photos)
    assert sorted(pictures(out)) == sorted(f"masks/{p.parent.name}/{p.name}.png" for p in photos)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["photos"], summary["failed"]) == (len(photos) + 2, 2)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["{tiles}"], "the following arguments are required: --out"),
        (["{tiles}/nothing-here", "--out", "{out}"], "is not a folder, a glob"),
        (["{tiles}/*.gif", "--out", "{out}"], "matches no files"),
        (["s3://bucket/tiles", "--out", "{out}"], "are read with --engine ray"),
        (["{tiles}", "--out", "{out}", "--model", "{tiles}/a.jpg"], "not a loadable ONNX model"),
        (["{tiles}", "--out", "{out}", "--ray-address", "auto"], "goes with --engine ray"),
        (["{tiles}", "--out", "{out}", "--log-every", "0"], "at least 1"),
    ],
)
def test_mistakes_in_the_command_exit_2(
    shared_data_dir: Path, tmp_path: Path, arguments: list[str], message: str
) -> None:
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    shutil.copy(next((shared_data_dir / "MT_Free" / "Imgs").glob("*.jpg")), tiles / "a.jpg")
    done = run_batch(*(a.format(tiles=tiles, out=tmp_path / "out") for a in arguments))
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_resumed_run_keeps_its_settings(
    model_path: Path, shared_data_dir: Path, tmp_path: Path
) -> None:
    copy_tiles(shared_data_dir, tmp_path / "tiles", per_class=1)
    out = tmp_path / "out"
    assert run_batch(tmp_path / "tiles", "--out", out, "--model", model_path).returncode == 0
    again = run_batch(tmp_path / "tiles", "--out", out, "--model", model_path, "--overlay")
    assert again.returncode == 2 and "other settings (overlay)" in again.stderr, again.stderr


def test_ray_engine_gives_the_local_engines_results(
    model_path: Path, shared_data_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("ray.data", reason="Ray is an optional extra: requirements/ray.txt")
    copy_tiles(shared_data_dir, tmp_path / "tiles", per_class=2)
    (tmp_path / "tiles" / "cut.jpg").write_bytes(b"\xff\xd8\xff")
    arguments = ("--model", model_path, "--labels", "--overlay")
    local = run_batch(tmp_path / "tiles", "--out", tmp_path / "local", *arguments)
    assert local.returncode == 1, local.stderr
    # An object-store folder, read through pyarrow's filesystems as s3:// would be; a Ray
    # started for the run, on this machine's cores.
    uri = (tmp_path / "tiles").as_uri()
    on_ray = run_batch(
        uri,
        "--out",
        tmp_path / "ray",
        *arguments,
        "--engine",
        "ray",
        "--ray-address",
        "local",
        timeout=300,
    )
    assert on_ray.returncode == 1, on_ray.stderr
    by_name = {}
    for engine, prefix in (("local", str(tmp_path / "tiles")), ("ray", uri)):
        by_name[engine] = {
            line.pop("photo").removeprefix(prefix): line for line in results(tmp_path / engine)
        }
    assert len(by_name["ray"]) == 13 and by_name["ray"] == by_name["local"]
    assert pictures(tmp_path / "ray") == pictures(tmp_path / "local")
