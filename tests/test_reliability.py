"""The reliability suite (issue 6): its quick mode against a real server, and its parts.

The quick mode runs every check once for the module (under a minute on a quiet machine)
and writes reliability/results/quick.{json,md}; each check is then one test, so a
failure names the check and its problems. `make reliability` runs the full mode.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import numpy as np
import pytest

from harness import REPO_ROOT
from harness.dockerfile import final_user, runs_as_root
from reliability import corpus, mutate, security
from reliability.options import QUICK, RESULTS_DIR, Options
from reliability.report import CheckResult, machine_description, write_report
from reliability.run import CHECKS, print_progress, run_checks
from service.config import Settings, SettingsError

pytest_plugins = ["tests.service_fixtures"]


@pytest.fixture(scope="module")
def quick_run(model_path: Path, shared_data_dir: Path) -> Iterator[dict[str, CheckResult]]:
    options = Options(
        model_path=model_path, data_dir=shared_data_dir, out_dir=RESULTS_DIR, budget=QUICK
    )
    results = run_checks(options, CHECKS, print_progress)
    meta = {
        "mode": "quick",
        "model": str(model_path),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_description(),
        "seconds": sum(r.seconds for r in results),
        "seed": options.seed,
    }
    write_report(results, meta, options.out_dir)
    yield {result.name: result for result in results}


@pytest.mark.slow
@pytest.mark.parametrize("name", CHECKS)
def test_quick_mode_check_passes(quick_run: dict[str, CheckResult], name: str) -> None:
    result = quick_run[name]
    assert result.passed, f"{name} failed:\n" + "\n".join(result.problems[:20])
    assert result.server_errors == 0


@pytest.mark.slow
def test_quick_mode_measures_what_the_issue_asks(quick_run: dict[str, CheckResult]) -> None:
    assert quick_run["fuzz"].inputs >= QUICK.fuzz_inputs
    assert quick_run["schema"].inputs >= QUICK.schema_examples
    assert quick_run["schema"].figures["schema_violations"] == 0
    assert quick_run["bombs"].rss_before_mb and quick_run["bombs"].rss_after_mb
    assert quick_run["soak"].figures["valid_answered_200"] > 0
    assert quick_run["restart"].figures["ready_max_s"] > 0  # measured; judged in full mode
    assert (RESULTS_DIR / "quick.json").is_file() and (RESULTS_DIR / "quick.md").is_file()


# The parts, without a server.


def test_unsafe_loading_is_found_in_source() -> None:
    source = "\n".join(
        [
            "import json, pickle",
            "from torch import load",
            "import numpy as np",
            "state = pickle.load(open('m.pkl', 'rb'))",
            "array = np.load('a.npy', allow_pickle=True)",
            "settings = json.load(open('s.json'))",
        ]
    )
    findings = security.unsafe_loading(source, "bad.py")
    assert findings == [
        "bad.py:1 imports pickle",
        "bad.py:2 imports torch",
        "bad.py:4 calls pickle.load",
        "bad.py:5 passes allow_pickle=True",
    ]
    assert security.unsafe_loading("import json\njson.load(f)\n", "good.py") == []


def test_credentialed_cors_is_found_in_source() -> None:
    source = "Middleware(CORSMiddleware, allow_origins=['*'], allow_credentials=True)\n"
    assert security.credentialed_cors(source, "app.py") == ["app.py:1 sets allow_credentials=True"]
    assert security.credentialed_cors("CORSMiddleware(allow_origins=['*'])\n", "app.py") == []


@pytest.mark.parametrize(
    ("dockerfile", "user", "as_root"),
    [
        ("FROM python:3.11\nCMD python -m service\n", None, True),
        ("FROM python:3.11\nUSER root\n", "root", True),
        ("FROM python:3.11\nUSER 0:0\n", "0:0", True),
        ("FROM a AS build\nUSER 1000\nFROM python:3.11\nCMD x\n", None, True),
        ("FROM python:3.11\nUSER 10001:10001\n", "10001:10001", False),
        ("ARG UID=4242\nFROM python:3.11\nARG UID\nUSER ${UID}\n", "4242", False),
        ("FROM python:3.11\nENV APP=app \\\n    X=1\n# a comment\nUSER $APP\n", "app", False),
    ],
)
def test_final_user_of_a_dockerfile(dockerfile: str, user: str | None, as_root: bool) -> None:
    assert final_user(dockerfile) == user
    assert runs_as_root(user) is as_root


def test_repository_dockerfiles_do_not_run_as_root() -> None:
    for name in security.DOCKERFILES:  # a name left over from a moved file fails here
        assert not runs_as_root(final_user((REPO_ROOT / name).read_text())), name


@pytest.mark.parametrize("width, height", [(0, 7), (70_000, 3), (2**31 - 1, 2**31 - 1)])
def test_patched_png_dimensions_are_what_a_decoder_reads(width: int, height: int) -> None:
    png = corpus.encode(".png", np.zeros((4, 5), np.uint8))
    patched = mutate.patch_dimensions(png, width, height)
    assert struct.unpack_from(">II", patched, 16) == (width, height)
    crc = struct.unpack_from(">I", patched, 29)[0]
    assert crc == zlib.crc32(patched[12:29])  # so decoders meet the size, not a bad CRC


def test_forged_headers_declare_the_size_they_claim() -> None:
    png = corpus.png_declaring(40_000, 30_000)
    assert png[12:16] == b"IHDR" and struct.unpack_from(">II", png, 16) == (40_000, 30_000)
    assert zlib.decompressobj().decompress(png[41:], 4096)  # a real, compressed IDAT follows
    jpeg = corpus.jpeg_declaring(40_000, 30_000)
    position = corpus.jpeg_frame_offset(jpeg)
    assert struct.unpack_from(">HH", jpeg, position + 5) == (30_000, 40_000)
    assert len(corpus.png_declaring(60_000, 60_000)) < 8 * 1024  # a few KB


def test_mutations_are_reproducible() -> None:
    data = bytes(range(256)) * 4
    assert mutate.flip_bits(data, [3, 700]) == mutate.flip_bits(data, [3, 700]) != data
    assert mutate.random_bytes(100, 7) == mutate.random_bytes(100, 7)
    assert mutate.replace_magic(b"\x89PNG\r\n\x1a\nrest", b"BM") == b"BMrest"


def test_timeouts_and_checksum_are_settings() -> None:
    settings = Settings.from_env(
        {
            "HEADER_TIMEOUT": "2.5",
            "BODY_TIMEOUT": "60",
            "KEEP_ALIVE_TIMEOUT": "1",
            "MAX_PIXELS_IN_FLIGHT": "1000000",
            "MODEL_SHA256": "AB" * 32,
        }
    )
    assert (settings.header_timeout, settings.body_timeout, settings.keep_alive_timeout) == (
        2.5,
        60.0,
        1.0,
    )
    assert settings.max_pixels_in_flight == 1_000_000
    assert settings.model_sha256 == "ab" * 32
    defaults = Settings()
    assert (defaults.header_timeout, defaults.body_timeout, defaults.keep_alive_timeout) == (
        10.0,
        30.0,
        5.0,
    )
    assert defaults.max_pixels_in_flight == 25_000_000 and defaults.model_sha256 is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HEADER_TIMEOUT", "0"),
        ("BODY_TIMEOUT", "soon"),
        ("KEEP_ALIVE_TIMEOUT", "nan"),
        ("HEADER_TIMEOUT", "99999"),
        ("MAX_PIXELS_IN_FLIGHT", "0"),
        ("MODEL_SHA256", "1234"),
    ],
)
def test_bad_reliability_setting_is_refused_in_one_sentence(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name} .*{value}"):
        Settings.from_env({name: value})


def test_pixel_budget_lets_large_images_take_turns_in_arrival_order() -> None:
    from service.admission import PixelBudget

    budget, events = PixelBudget(10), []

    async def work(name: str, pixels: int) -> None:
        async with budget.hold(pixels):
            events.append((name, budget.in_use))
            await anyio.sleep(0.05)

    async def scenario() -> None:
        async with anyio.create_task_group() as group:
            for name, pixels in [("a", 6), ("large", 10), ("small", 2)]:
                group.start_soon(work, name, pixels)
                await anyio.sleep(0.01)
            with anyio.move_on_after(0.02):  # a request cancelled while waiting
                async with budget.hold(5):
                    pass

    anyio.run(scenario)
    # "small" would fit beside "a" but waits behind "large": no starvation of large images.
    assert events == [("a", 6), ("large", 10), ("small", 2)]
    assert budget.in_use == 0 and not budget.waiting
