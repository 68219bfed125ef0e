"""GET /openapi.json: a valid OpenAPI 3.1 document of every route and status the app can
answer, and the README's client run against a real server."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from harness import REPO_ROOT
from harness.server import Server
from service.app import create_app, load_segmenter
from service.config import Settings

pytest_plugins = ["tests.service_fixtures"]
pytestmark = pytest.mark.slow  # a real server

# The modules whose HTTPException and ImageError statuses /segment answers.
SEGMENT_MODULES = ("app.py", "uploads.py", "admission.py", "imaging.py")
CLIENT = REPO_ROOT / "examples" / "client.py"


def raised_statuses(module: str) -> set[int]:
    """The literal statuses of every HTTPException and ImageError made in `module`."""
    tree = ast.parse((REPO_ROOT / "service" / module).read_text())
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("HTTPException", "ImageError")
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }


def answered_statuses(module: str) -> set[int]:
    """The literal `status_code=` of every response made in `module`."""
    tree = ast.parse((REPO_ROOT / "service" / module).read_text())
    return {
        keyword.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for keyword in node.keywords
        if keyword.arg == "status_code" and isinstance(keyword.value, ast.Constant)
    }


def server_statuses() -> set[int]:
    """The literal statuses of the answers service/server.py's HTTP protocol makes itself."""
    tree = ast.parse((REPO_ROOT / "service" / "server.py").read_text())
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "_json_answer"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }


@pytest.fixture(scope="module")
def document(client: httpx.Client) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    return response.json()


def test_document_is_valid_openapi_3_1(document: dict) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises with the first problem it finds


def test_every_route_and_status_is_documented(document: dict, model_path: Path) -> None:
    settings = Settings(model_path=model_path)
    app = create_app(settings, load_segmenter(settings))
    served = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route) and route.methods
        # Starlette answers HEAD wherever it answers GET.
        for method in route.methods - {"HEAD"}
    }
    documented = {
        (path, method) for path, operations in document["paths"].items() for method in operations
    }
    assert served == documented

    segment = set(map(int, document["paths"]["/segment"]["post"]["responses"]))
    raised = set().union(*map(raised_statuses, SEGMENT_MODULES))
    assert raised and raised <= segment, f"undocumented: {raised - segment}"
    everywhere = set(map(int, document["components"]["responses"]))
    operations = {
        int(status)
        for operations in document["paths"].values()
        for operation in operations.values()
        for status in operation["responses"]
    }
    undocumented = answered_statuses("app.py") - everywhere - operations
    assert not undocumented, f"undocumented: {undocumented}"
    # The server answers these before any route is known: they hold for every path.
    protocol = server_statuses()
    assert {400, 408, 431} <= protocol and protocol <= everywhere, protocol - everywhere


def test_not_found_names_every_route(client: httpx.Client, document: dict) -> None:
    message = client.get("/no/such/route").json()["error"]
    for path in document["paths"]:
        assert re.search(rf"[ ,]{re.escape(path)}[ ,.]", message), (path, message)


def test_readme_client_saves_the_mask_and_prints_the_regions(
    server: Server, tile_jpeg: bytes, tmp_path: Path
) -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert f"```python\n{CLIENT.read_text()}```" in readme, "README.md shows examples/client.py"
    (tmp_path / "tile.jpg").write_bytes(tile_jpeg)
    environment = {**os.environ, "API_URL": server.base_url, "NO_PROXY": "127.0.0.1"}
    run = subprocess.run(
        [sys.executable, str(CLIENT), "tile.jpg"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "mask.png").read_bytes().startswith(b"\x89PNG")
    assert run.stdout.startswith("defective: ")
    regions = [line for line in run.stdout.splitlines()[1:] if line]
    assert all(line.startswith("{'x': ") for line in regions)

    (tmp_path / "notes.txt").write_text("not a photo")
    refused = subprocess.run(
        [sys.executable, str(CLIENT), "notes.txt"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 1
    assert refused.stderr.strip() == "The upload is not a JPEG, PNG, BMP or TIFF image."
