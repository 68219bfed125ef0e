"""Security checks: ONNX only (no pickle, no torch), uploads never on disk, quiet errors,
CORS off unless configured and never with credentials, containers not running as root.
"""

from __future__ import annotations

import ast
import json
import os
import re
import tempfile
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np

from harness import REPO_ROOT
from harness.dockerfile import final_user, runs_as_root
from harness.multipart import FORM_TYPE, IMAGE_PART, TEXT_PART, form
from harness.server import Server, launch, wait_ready
from reliability import answers, corpus, mutate
from reliability.options import Options
from reliability.report import CheckResult
from reliability.server_log import log_problems

UNSAFE_MODULES = frozenset(
    ["pickle", "_pickle", "cPickle", "dill", "joblib", "cloudpickle", "shelve", "marshal", "torch"]
)
UNSAFE_CALLS = frozenset(["load", "loads", "Unpickler"])
DOCKERFILES = ("Dockerfile", "docker/Dockerfile.gpu")
# Files a Python process legitimately keeps open: its interpreter, libraries and model.
_EXPECTED_OPEN = re.compile(r"\.so(\.[\d.]+)?$|/site-packages/|/lib/python3|\.onnx$|^/dev/|^/proc/")


def unsafe_loading(source: str, filename: str) -> list[str]:
    """Where `source` imports a pickle-based loader, calls one, or allows pickles in np.load."""
    findings = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                modules.append(node.module)
            for module in modules:
                if module.split(".")[0] in UNSAFE_MODULES:
                    findings.append(f"{filename}:{node.lineno} imports {module}")
        elif isinstance(node, ast.Call):
            function = node.func
            if (
                isinstance(function, ast.Attribute)
                and function.attr in UNSAFE_CALLS
                and isinstance(function.value, ast.Name)
                and function.value.id in UNSAFE_MODULES
            ):
                findings.append(
                    f"{filename}:{node.lineno} calls {function.value.id}.{function.attr}"
                )
            for keyword in node.keywords:
                if keyword.arg == "allow_pickle" and _is_true(keyword.value):
                    findings.append(f"{filename}:{node.lineno} passes allow_pickle=True")
    return findings


def credentialed_cors(source: str, filename: str) -> list[str]:
    """Where `source` turns CORS credentials on (allow_credentials=True)."""
    return [
        f"{filename}:{node.lineno} sets allow_credentials=True"
        for node in ast.walk(ast.parse(source, filename))
        if isinstance(node, ast.Call)
        for keyword in node.keywords
        if keyword.arg == "allow_credentials" and _is_true(keyword.value)
    ]


def run(options: Options) -> CheckResult:
    result = CheckResult("security")
    started = time.monotonic()
    for path in sorted((REPO_ROOT / "service").glob("*.py")):
        source = path.read_text()
        for finding in unsafe_loading(source, path.name) + credentialed_cors(source, path.name):
            result.fail(f"static: {finding}")
    result.figures["static scan of service/"] = "clean" if result.passed else "findings"
    # The CORS servers start now, so that their start overlaps the audited uploads.
    logs = options.out_dir / "logs"
    cors_servers = {
        origin: launch(
            logs / f"cors-{n}.log", MODEL_PATH=str(options.model_path), CORS_ORIGINS=origin
        )
        for n, origin in enumerate(("https://line.example", "*"))
    }
    try:
        with tempfile.TemporaryDirectory(prefix="security-") as scratch:
            _audited_uploads(options, Path(scratch), result)
        _cors(cors_servers, result)
    finally:
        for server in cors_servers.values():
            server.stop()
    _dockerfiles(result)
    result.figures["key"] = "; ".join(
        f"{name}: {verdict}"
        for name, verdict in result.figures.items()
        if name in ("audit", "uploads on disk", "CORS", "containers")
    )
    result.seconds = time.monotonic() - started
    return result


def _audited_uploads(options: Options, scratch: Path, result: CheckResult) -> None:
    """Serve uploads in a process watched by audit hooks, with an empty TMPDIR."""
    temporary, report = scratch / "tmp", scratch / "audit.json"
    temporary.mkdir()
    server = launch(
        options.out_dir / "logs" / "security.log",
        args=("-m", "reliability.audited_service"),
        MODEL_PATH=str(options.model_path),
        TMPDIR=str(temporary),
        RELIABILITY_AUDIT_REPORT=str(report),
    )
    try:
        wait_ready(server)
        result.rss_before_mb = server.rss_mb()
        baseline = _open_paths(server.pid)
        with _OpenFiles(server) as opened, httpx.Client(base_url=server.base_url, timeout=60) as c:
            _send_uploads(c, options, result)
            _send_mistakes(c, options, result)
            info = c.get("/info").text
            for secret in (str(REPO_ROOT), str(options.model_path)):
                if secret in info:
                    result.fail(f"/info shows the server path {secret}")
            _cors_default(c, result)
        result.rss_after_mb = server.rss_mb()
    finally:
        exit_code = server.stop()
    for line in log_problems(server.log()):
        result.fail(f"server log: {line}")
    if exit_code != 0:
        result.fail(f"the audited server exited with {exit_code}: {server.log()[-500:]}")
    seen = json.loads(report.read_text()) if report.exists() else None
    if seen is None:
        result.fail("the audited server wrote no audit report")
    else:
        for kind, events in seen.items():
            if events:
                result.fail(f"audit: {kind}: {sorted(set(events))[:5]}")
        result.figures["audit"] = (
            "no pickle, no torch, no files written" if not any(seen.values()) else "findings"
        )
    left = sorted(p.name for p in temporary.iterdir())
    unexpected = sorted(p for p in opened.paths - baseline if not _EXPECTED_OPEN.search(p))
    if left:
        result.fail(f"uploads left files in TMPDIR: {left[:5]}")
    if unexpected:
        result.fail(f"the server opened files while receiving uploads: {unexpected[:5]}")
    result.figures["uploads on disk"] = "none" if not (left or unexpected) else "found"
    result.figures["open-file samples during uploads"] = opened.samples


def _send_uploads(client: httpx.Client, options: Options, result: CheckResult) -> None:
    """Real photos, and a multipart body of ~9 MB sent in pieces, so it takes a while."""
    photo = corpus.seed_samples(options.data_dir, 1, options.seed)[0].data
    noise = np.random.default_rng(options.seed).integers(0, 256, (1700, 1700), np.uint8)
    big_png = cv2.imencode(".png", noise)[1].tobytes()  # incompressible: ~2.9 MB
    big_form = form([(TEXT_PART, b"p" * 5_000_000), (IMAGE_PART, big_png)])
    uploads = [
        ("photo, raw", photo, "image/jpeg", 200),
        ("photo, multipart", form([(IMAGE_PART, photo)]), FORM_TYPE, 200),
        (f"{len(big_form) / 1e6:.1f} MB multipart, in pieces", big_form, FORM_TYPE, 200),
        ("12 MB body", b"\x00" * 12_000_000, "application/octet-stream", 413),
    ]
    for name, body, content_type, expected in uploads:
        content = _pieces(body) if len(body) > 1_000_000 else body
        response = client.post("/segment", content=content, headers={"Content-Type": content_type})
        result.inputs += 1
        result.statuses[str(response.status_code)] += 1
        if response.status_code != expected:
            result.fail(f"{name}: {response.status_code}, expected {expected}")


def _send_mistakes(client: httpx.Client, options: Options, result: CheckResult) -> None:
    """One of each client mistake: its error body must be JSON and must not leak."""
    photo = corpus.seed_samples(options.data_dir, 1, options.seed)[0].data
    jpeg = {"Content-Type": "image/jpeg"}
    requests = [
        ("GET", "/nowhere", b"", {}),
        ("PUT", "/segment", photo, jpeg),
        ("POST", "/segment", photo, {"Content-Type": "text/plain"}),
        ("POST", "/segment", mutate.random_bytes(5000, 1), jpeg),
        ("POST", "/segment", photo[: len(photo) // 2], jpeg),
        ("POST", "/segment", b"", jpeg),
        ("POST", "/segment?format=gif", photo, jpeg),
        ("POST", "/segment", photo, {**jpeg, "Accept": "text/html"}),
        ("POST", "/segment", corpus.png_declaring(40_000, 40_000), jpeg),
        (
            "POST",
            "/segment",
            form([(IMAGE_PART, photo)], closing=False),
            {"Content-Type": FORM_TYPE},
        ),
        ("POST", "/segment", b"x", {"Content-Type": "multipart/form-data; boundary=" + "b" * 300}),
    ]
    for method, path, body, headers in requests:
        response = client.request(method, path, content=body, headers=headers)
        result.inputs += 1
        result.statuses[str(response.status_code)] += 1
        content_type = response.headers.get("content-type", "")
        problem = answers.error_problem(response.status_code, content_type, response.content)
        if problem or not 400 <= response.status_code < 500:
            result.fail(f"{method} {path}: {problem or response.status_code}")


def _cors_default(client: httpx.Client, result: CheckResult) -> None:
    origin = {"Origin": "https://evil.example"}
    preflight = client.options(
        "/segment", headers={**origin, "Access-Control-Request-Method": "POST"}
    )
    simple = client.get("/health", headers=origin)
    if any(r.headers.get("access-control-allow-origin") for r in (preflight, simple)):
        result.fail("CORS headers without CORS_ORIGINS set")


def _cors(servers: dict[str, Server], result: CheckResult) -> None:
    """With one origin configured, and with '*': never credentials, never other origins."""
    for allowed, server in servers.items():
        wait_ready(server)
        _cors_configured(server, allowed, result)
    if "CORS" not in result.figures:
        result.figures["CORS"] = "off by default; configured origins only; never credentials"


def _cors_configured(server: Server, allowed: str, result: CheckResult) -> None:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        for origin in ("https://line.example", "https://evil.example"):
            headers = {"Origin": origin, "Cookie": "session=1"}
            preflight = client.options(
                "/segment", headers={**headers, "Access-Control-Request-Method": "POST"}
            )
            simple = client.get("/health", headers=headers)
            for response in (preflight, simple):
                result.inputs += 1
                granted = response.headers.get("access-control-allow-origin")
                if response.headers.get("access-control-allow-credentials", "").lower() == "true":
                    result.fail(f"CORS_ORIGINS={allowed}: credentials allowed for {origin}")
                    result.figures["CORS"] = "credentials allowed"
                if allowed != "*" and origin != allowed and granted:
                    result.fail(f"CORS_ORIGINS={allowed}: {origin} was granted {granted}")
                if (allowed == "*" or origin == allowed) and not granted:
                    result.fail(f"CORS_ORIGINS={allowed}: {origin} was not granted access")


def _dockerfiles(result: CheckResult) -> None:
    verdicts = []
    for name in DOCKERFILES:
        path = REPO_ROOT / name
        if not path.exists():
            verdicts.append(f"{name}: not present, not checked")
            continue
        user = final_user(path.read_text())
        verdicts.append(f"{name}: USER {user}")
        if runs_as_root(user):
            result.fail(f"{name}: the final stage runs as root (USER {user})")
    result.figures["containers"] = "; ".join(verdicts)


class _OpenFiles:
    """Every path the server process holds open, sampled every 10 ms while the block runs."""

    def __init__(self, server: Server) -> None:
        self.pid = server.pid
        self.paths: set[str] = set()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> _OpenFiles:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.paths |= _open_paths(self.pid)
            self.samples += 1


def _open_paths(pid: int) -> set[str]:
    """Paths of the files a process has open, deleted ones included ("... (deleted)").

    Read from /proc rather than psutil, which skips deleted files: exactly what a
    spooled upload in an unlinked temporary file would be.
    """
    folder = Path(f"/proc/{pid}/fd")
    paths = set()
    try:
        descriptors = os.listdir(folder)
    except OSError:
        return paths
    for descriptor in descriptors:
        try:
            target = os.readlink(folder / descriptor)
        except OSError:
            continue
        if target.startswith("/"):
            paths.add(target)
    return paths


def _pieces(body: bytes, size: int = 256 * 1024):
    for start in range(0, len(body), size):
        yield body[start : start + size]
        time.sleep(0.005)


def _is_true(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is True
