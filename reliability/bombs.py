"""Decompression bombs: few-KB files declaring huge images are refused fast, memory flat.

Also bombs of the other layers: an 8 MB header is refused with 431 at the header limit,
not read whole; a 9.5 MB body of tiny multipart parts is refused with 400 at the parts
limit, at a fraction of the server CPU it took to parse them all; a request line of
garbage gets the JSON 400 every other error carries.

Also measured: what an image *at* the pixel limit costs (a few KB of PNG can decode to
25 MP legitimately), and that several of them at once cost no more memory than one.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
import time
from collections import Counter

import httpx
import numpy as np

from harness.multipart import FORM_TYPE, IMAGE_PART, TEXT_PART, form
from harness.process import MIB, RssSampler, cpu_seconds
from harness.server import Server, launch, wait_ready
from reliability import corpus
from reliability.options import Options
from reliability.report import CheckResult
from reliability.server_log import record_shutdown_problems

REFUSAL_SECONDS = 0.5  # a refusal reads a header; half a second is already generous
RSS_JUMP_MB = 10.0  # tolerated RSS growth while bombs are refused
PARALLEL_AT_LIMIT = 4
# Peak memory for PARALLEL_AT_LIMIT images at the limit, relative to one alone.
PARALLEL_PEAK_RATIO = 1.5
# A decoded image lives for tens of milliseconds: sample often enough to see it.
SAMPLE_SECONDS = 0.005
HEADER_BOMB_BYTES = 8_000_000
# Under the body limit, so that the parts limit, not the size limit, must stop it.
PART_BOMB_BYTES = 9_500_000
# Server CPU per part bomb: parsing all of its ~170,000 parts took 1.9 s; stopping at the
# parts limit leaves reading the body, tens of milliseconds.
PART_BOMB_CPU_SECONDS = 0.5


def bombs() -> list[corpus.Sample]:
    """Files of a few KB or less whose headers declare 1.6 to 4.9 gigapixels."""
    return [
        corpus.Sample("png 40000x40000", corpus.png_declaring(40_000, 40_000), False),
        corpus.Sample("png 60000x60000", corpus.png_declaring(60_000, 60_000), False),
        corpus.Sample("jpeg 40000x40000", corpus.jpeg_declaring(40_000, 40_000), False),
        corpus.Sample("jpeg 65535x65535", corpus.jpeg_declaring(65_535, 65_535), False),
        corpus.Sample("tiff 70000x70000", corpus.tiff_declaring(70_000, 70_000), False),
        corpus.Sample("bmp 50000x50000", corpus.bmp_declaring(50_000, 50_000), False),
    ]


def run(options: Options) -> CheckResult:
    result = CheckResult("bombs")
    started = time.monotonic()
    # Quick mode lowers the limits so that images at the limit stay cheap to send.
    limit = 2_000_000 if options.quick else 25_000_000
    server = launch(
        options.out_dir / "logs" / "bombs.log",
        MODEL_PATH=str(options.model_path),
        MAX_IMAGE_PIXELS=str(limit),
        MAX_PIXELS_IN_FLIGHT=str(limit),
    )
    try:
        wait_ready(server)
        with httpx.Client(base_url=server.base_url, timeout=120) as client:
            _warm_up(client, options)
            result.rss_before_mb = server.rss_mb()
            with RssSampler(server.pid, SAMPLE_SECONDS) as peak:
                _send_bombs(client, result, repeats=2 if options.quick else 5)
            result.rss_after_mb = server.rss_mb()
            jump = max(peak.peak_bytes / MIB, result.rss_after_mb) - result.rss_before_mb
            result.figures["peak_rss_jump_while_refusing_mb"] = round(jump, 1)
            if jump > RSS_JUMP_MB:
                result.fail(f"RSS rose {jump:.0f} MiB while refusing bombs (> {RSS_JUMP_MB})")
            _send_protocol_bombs(server, result, repeats=2 if options.quick else 5)
            _at_the_limit(client, server, limit, result)
        if not server.healthy():
            result.fail("the server was not alive at the end")
    finally:
        exit_code = server.stop()
    record_shutdown_problems(result, server, exit_code)
    slowest = result.figures.get("slowest_refusal_ms", 0)
    result.figures["key"] = (
        f"refused in <= {slowest:.0f} ms, RSS +{jump:.1f} MiB; 8 MB header 431 in <= "
        f"{result.figures.get('header_bomb_refusal_ms_max', 0):.0f} ms; 9.5 MB of tiny parts "
        f"400 for <= {result.figures.get('part_bomb_server_cpu_s_max', 0):.2f} s of server CPU"
    )
    result.seconds = time.monotonic() - started
    return result


def _send_bombs(client: httpx.Client, result: CheckResult, repeats: int) -> None:
    slowest = 0.0
    sizes = {}
    for bomb in bombs():
        sizes[bomb.name] = f"{len(bomb.data) / 1024:.1f} KB"
        for attempt in range(repeats):
            multipart = attempt % 2 == 1
            began = time.monotonic()
            if multipart:
                response = client.post(
                    "/segment",
                    content=form([(IMAGE_PART, bomb.data)]),
                    headers={"Content-Type": FORM_TYPE},
                )
            else:
                response = client.post(
                    "/segment", content=bomb.data, headers={"Content-Type": "image/png"}
                )
            seconds = time.monotonic() - began
            slowest = max(slowest, seconds)
            result.inputs += 1
            result.statuses[str(response.status_code)] += 1
            if response.status_code != 413:
                result.fail(f"{bomb.name}: {response.status_code}, not 413: {response.text[:200]}")
            if seconds > REFUSAL_SECONDS:
                result.fail(f"{bomb.name}: refused after {seconds:.2f} s (> {REFUSAL_SECONDS})")
    result.figures["bomb_file_sizes"] = sizes
    result.figures["slowest_refusal_ms"] = round(slowest * 1000, 1)


def _send_protocol_bombs(server: Server, result: CheckResult, repeats: int) -> None:
    """An 8 MB header, a request line of garbage and a body of tiny parts, `repeats` times
    each over raw sockets: a JSON error each, fast and cheap."""
    header_bomb = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * HEADER_BOMB_BYTES
    part = form([(TEXT_PART, b"v")], boundary="b", closing=False)
    closing = form([], boundary="b")
    count = (PART_BOMB_BYTES - len(closing)) // len(part)
    parts = part * count + closing
    part_bomb = (
        b"POST /segment HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
        b"boundary=b\r\nContent-Length: %d\r\n\r\n%s" % (len(parts), parts)
    )
    garbage = b"\x16\x03\x01\x00\xa5 not HTTP at all\r\n\r\n"
    header_seconds: list[float] = []
    part_cpu: list[float] = []
    for _ in range(repeats):
        status, seconds = _refusal(server.port, header_bomb, result, "8 MB header")
        header_seconds.append(seconds)
        if status != 431:
            result.fail(f"an 8 MB header got {status}, not 431")
        if seconds > REFUSAL_SECONDS:
            result.fail(f"an 8 MB header was refused after {seconds:.2f} s")
        cpu_before = cpu_seconds(server.pid)
        status, _ = _refusal(server.port, part_bomb, result, "tiny parts")
        part_cpu.append(cpu_seconds(server.pid) - cpu_before)
        if status != 400:
            result.fail(f"a body of tiny parts got {status}, not 400")
        if part_cpu[-1] > PART_BOMB_CPU_SECONDS:
            result.fail(f"a body of tiny parts cost {part_cpu[-1]:.2f} s of server CPU")
        status, _ = _refusal(server.port, garbage, result, "garbage request line")
        if status != 400:
            result.fail(f"a request line of garbage got {status}, not 400")
    result.figures["header_bomb_refusal_ms_max"] = round(max(header_seconds) * 1000, 1)
    result.figures["part_bomb"] = f"{len(parts) / 1e6:.1f} MB, {count} parts"
    result.figures["part_bomb_server_cpu_s_max"] = round(max(part_cpu), 3)


def _refusal(port: int, data: bytes, result: CheckResult, name: str) -> tuple[int, float]:
    """Send `data` until the server answers or closes; its status and the seconds taken.

    The answer must be a JSON error; the server may close before the client has sent it
    all, which is the point of refusing at a limit.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        began = time.monotonic()
        sent = 0
        try:
            while sent < len(data) and not select.select([connection], [], [], 0)[0]:
                sent += connection.send(data[sent : sent + 65_536])
        except OSError:
            pass  # closed mid-send: the answer is already on its way
        response = http.client.HTTPResponse(connection)
        response.begin()
        body = response.read()
        seconds = time.monotonic() - began
    result.inputs += 1
    result.statuses[str(response.status)] += 1
    try:
        json.loads(body)["error"].strip()
    except (ValueError, KeyError, TypeError, AttributeError):
        result.fail(f"{name}: {response.status} without a JSON error: {body[:200]!r}")
    return response.status, seconds


def _at_the_limit(client: httpx.Client, server: Server, limit: int, result: CheckResult) -> None:
    """One image at the pixel limit, then several at once: they must take turns."""
    side = int(limit**0.5)
    image = np.zeros((side, side), np.uint8)
    image[side // 3 : side // 2, side // 4 : side // 3] = 20  # one dark "defect"
    png = corpus.encode(".png", image)
    answers: Counter[str] = Counter()

    def send() -> None:
        response = client.post("/segment", content=png, headers={"Content-Type": "image/png"})
        answers[str(response.status_code)] += 1

    baseline = server.rss_mb()
    began = time.monotonic()
    with RssSampler(server.pid, SAMPLE_SECONDS) as one:
        send()
    one_seconds = time.monotonic() - began
    with RssSampler(server.pid, SAMPLE_SECONDS) as several:
        threads = [threading.Thread(target=send) for _ in range(PARALLEL_AT_LIMIT)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
    one_jump = one.peak_bytes / MIB - baseline
    several_jump = several.peak_bytes / MIB - baseline
    result.figures["image_at_limit"] = f"{side}x{side} PNG of {len(png) / 1024:.0f} KB"
    result.figures["image_at_limit_seconds"] = round(one_seconds, 2)
    result.figures["image_at_limit_peak_rss_jump_mb"] = round(one_jump, 1)
    result.figures[f"{PARALLEL_AT_LIMIT}_at_once_peak_rss_jump_mb"] = round(several_jump, 1)
    result.inputs += 1 + PARALLEL_AT_LIMIT
    result.statuses.update(answers)
    if answers["200"] != 1 + PARALLEL_AT_LIMIT:
        result.fail(f"images at the pixel limit got {dict(answers)}, not all 200")
    if several_jump > PARALLEL_PEAK_RATIO * max(one_jump, 1.0):
        result.fail(
            f"{PARALLEL_AT_LIMIT} images at the limit at once took {several_jump:.0f} MiB, "
            f"one alone {one_jump:.0f} MiB: large images do not take turns"
        )


def _warm_up(client: httpx.Client, options: Options) -> None:
    """A few real photos first, so that RSS before the bombs is the serving level."""
    for sample in corpus.seed_samples(options.data_dir, 3, options.seed):
        client.post("/segment", content=sample.data, headers={"Content-Type": "image/jpeg"})
