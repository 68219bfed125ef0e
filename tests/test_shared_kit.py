"""The readers and helpers that tests, benchmarks and reliability share, on small inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.dockerfile import final_environment, instructions
from harness.multipart import FORM_TYPE, IMAGE_PART, TEXT_PART, form
from harness.process import MIB, RssSampler, peak_rss_bytes, rss_bytes
from training.requirements import pinned_versions, requirement_names


def test_requirements_read_like_pip(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text(
        "Typing_Extensions==4.0  # a comment\nuvloop==0.2 ; python_version < '3'\n"
    )
    (tmp_path / "lock.txt").write_text(
        "-r base.txt\n"
        "numpy==2.0 \\\n"
        "    --hash=sha256:aa \\\n"
        "    --hash=sha256:bb\n"
        "    # via -r base.txt\n"
        "--index-url https://example.invalid/simple\n"
        "packaging>=20\n"
    )
    lock = tmp_path / "lock.txt"
    # The marker excludes uvloop here; an unpinned requirement has a name but no pin.
    assert requirement_names(lock) == ["typing-extensions", "numpy", "packaging"]
    assert pinned_versions(lock) == {"typing-extensions": "4.0", "numpy": "2.0"}


def test_final_environment_resolves_quotes_variables_and_stages() -> None:
    dockerfile = (
        "ARG HOME_DIR=/srv\n"
        "FROM a AS build\nENV DROPPED=1\n"
        "FROM b\n"
        "ARG HOME_DIR\n"
        'ENV GREETING="two  words" \\\n'
        "    # a comment inside the instruction\n"
        "    APP=${HOME_DIR}/app\n"
        "ENV OLD_FORM value\n"
    )
    assert final_environment(dockerfile) == {
        "GREETING": "two  words",
        "APP": "/srv/app",
        "OLD_FORM": "value",
    }
    steps = [op for op, _ in instructions(dockerfile)]
    assert steps == ["ARG", "FROM", "ENV", "FROM", "ARG", "ENV", "ENV"]


def test_form_frames_each_part_and_the_end() -> None:
    body = form([(TEXT_PART, b"line-3"), (IMAGE_PART, b"JPEG")])
    boundary = FORM_TYPE.partition("boundary=")[2].encode()
    assert body.startswith(b"--" + boundary + b"\r\n" + TEXT_PART.encode() + b"\r\n\r\nline-3")
    assert body.endswith(b"\r\n\r\nJPEG\r\n--" + boundary + b"--\r\n")
    assert not form([(IMAGE_PART, b"JPEG")], closing=False).endswith(b"--\r\n")


# Holds 64 MiB for a while between two lines on stdin, then frees it. A small process of
# its own: in the test process (2.5 GB, dozens of threads) the sampler missed the block.
_ALLOCATOR = """
import sys, time
print("ready", flush=True)
sys.stdin.readline()
held = b"\\x01" * (64 * 2**20)  # written, so resident
time.sleep(0.3)
del held  # a block this large goes back to the system at once
print("freed", flush=True)
sys.stdin.readline()
"""


def test_rss_sampler_sees_a_peak_that_is_gone_at_the_end() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _ALLOCATOR], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        before = rss_bytes(child.pid)
        with RssSampler(child.pid, interval=0.001) as sampler:
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.stdout.readline() == "freed\n"
        # The kernel's own mark saw it too. (It can trail a sample by a few pages: the
        # kernel folds per-thread counts into both only now and then.)
        kernel_peak = peak_rss_bytes(child.pid)
        child.stdin.write("end\n")
        child.stdin.flush()
    assert sampler.peak_bytes >= before + 60 * MIB
    assert kernel_peak >= before + 60 * MIB
