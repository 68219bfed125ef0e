"""The original service, rebuilt: FastAPI + `load_learner` + `learn.predict` (a baseline only).

`PORT=8001 python -m benchmarks.blog_server --learner export.pkl` (HOST: 127.0.0.1).
It behaves as the published app/main.py of iterative/magnetic-tiles-defect: the Learner
is loaded at start, CORS is open, and the endpoint is an `async def` taking the upload
as `bytes` from `File()` (multipart field `image`) and answering `{"pred": [[...], ...]}`,
the 128 px centre crop's mask as nested lists of 0/1. Being `async def`, it runs
learn.predict on the event loop itself, as the original did: one request at a time, and
no other request is read meanwhile. Only the route differs (/segment, the one the
benchmark's client calls, for the original's /analyze). A measurement aid, not a service.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import FastAPI, File
from fastapi.middleware.cors import CORSMiddleware


def create_app(pkl: Path) -> FastAPI:
    from benchmarks.blog_learner import analyze, load

    loaded: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loaded["learn"] = load(pkl)
        yield

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
    )

    @app.post("/segment")
    async def segment(image: Annotated[bytes, File()]) -> dict[str, Any]:
        return analyze(loaded["learn"], image)

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learner", type=Path, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(
        create_app(args.learner),
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8001")),
        log_level="warning",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
