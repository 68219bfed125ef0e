"""GET /: the page for people, driven in a real headless Chromium against a real server."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.server import Server

pytest_plugins = ["tests.service_fixtures"]
pytestmark = pytest.mark.slow  # a real server and a real browser

# Without the background-networking switches Chromium calls out to its vendor's services,
# which a closed network refuses; none of these change how the page itself runs.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("No Chromium on PATH; install it (Debian: apt-get install chromium).")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def test_page_headers_forbid_inline_script_and_other_origins(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self';" in policy
    assert "unsafe-inline" not in policy and "http" not in policy
    assert "<script>" not in page.text and 'src="/page.js"' in page.text
    script = client.get("/page.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith(
        "text/javascript"
    )
    assert len(page.content) + len(script.content) < 16_000  # a few KB


def defective_tile(client: httpx.Client, tile_paths: list[Path]) -> tuple[Path, dict]:
    """The first Fray or Crack photo the model finds defects in, and the API's answer."""
    for path in [p for p in tile_paths if "MT_Fray" in str(p) or "MT_Crack" in str(p)][:20]:
        answer = client.post("/segment?format=json", files={"image": path.read_bytes()}).json()
        if answer["regions"]:
            return path, answer
    raise AssertionError("the model finds no defect in the first 20 Fray and Crack photos")


def test_page_segments_a_photo_and_shows_errors(
    browser: object,
    server: Server,
    client: httpx.Client,
    tile_paths: list[Path],
    tmp_path: Path,
) -> None:
    path, answer = defective_tile(client, tile_paths)
    page = browser.new_page()  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server.base_url + "/")

    page.set_input_files("#file", str(path))
    # Functions, not expressions: the page's policy forbids evaluating strings as script.
    page.wait_for_function(
        "() => { const picture = document.getElementById('picture'); "
        "return picture.src.startsWith('blob:') && picture.complete && picture.naturalWidth; }"
    )
    verdict = page.inner_text("#verdict")
    assert verdict.startswith("Defective: score ")
    assert f"threshold {answer['decision_threshold']:.2f}" in verdict
    rows = page.locator("#regions tbody tr")
    assert rows.count() == len(answer["regions"])
    first = answer["regions"][0]
    cells = rows.first.locator("td").all_inner_texts()
    assert cells[:7] == [
        str(v)
        for v in (
            1,
            first["class"],
            first["x"],
            first["y"],
            first["width"],
            first["height"],
            first["area"],
        )
    ]
    assert "answered in" in page.inner_text("#timing")
    natural = page.evaluate("() => [picture.naturalWidth, picture.naturalHeight]")
    assert natural == [answer["width"], answer["height"]]
    screenshot = tmp_path / "page.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot of the page with {path.name}: {screenshot}")

    # The view switch, from the keyboard: the radio buttons take arrow keys.
    page.focus("input[value=overlay]")
    page.keyboard.press("ArrowDown")
    page.wait_for_function(
        "() => document.getElementById('status').textContent.endsWith('mask shown.')"
    )

    page.set_input_files(
        "#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a photo"}]
    )
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#error") == "The upload is not a JPEG, PNG, BMP or TIFF image."
    assert page.is_hidden("#result")
    assert not [e for e in errors if "415" not in e], errors  # the refused upload only
