"""GET / and GET /page.js: a page for people to try the API in a browser.

The page is one HTML file with its style inside and its script beside it (page.html,
page.js), served from memory. Its Content-Security-Policy allows scripts from this
service only and no inline script, the page's own style by its hash, pictures from this
service or made in the page from its answers (and the empty data: icon that keeps the
browser from asking for /favicon.ico), and requests to this service only; no other
origin is reached, so the page works offline.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_FOLDER = Path(__file__).parent


def page_routes() -> list[Route]:
    """The routes of the page and of its script."""
    html = (_FOLDER / "page.html").read_text(encoding="utf-8")
    script = (_FOLDER / "page.js").read_bytes()
    style = re.search(r"<style>(.*?)</style>", html, re.DOTALL)
    if style is None:
        raise RuntimeError("service/page.html has no <style> element to hash.")
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    headers = {
        "Content-Security-Policy": (
            "default-src 'none'; script-src 'self'; "
            f"style-src 'sha256-{digest}'; img-src 'self' blob: data:; connect-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
    }

    async def page(request: Request) -> Response:
        return Response(html, media_type="text/html; charset=utf-8", headers=headers)

    async def page_script(request: Request) -> Response:
        return Response(script, media_type="text/javascript; charset=utf-8", headers=headers)

    return [
        Route("/", page, methods=["GET"]),
        Route("/page.js", page_script, methods=["GET"]),
    ]
