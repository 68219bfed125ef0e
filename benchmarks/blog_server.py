"""The blog's serving path as a small HTTP endpoint: `load_learner` + `learn.predict`.

`PORT=8001 python -m benchmarks.blog_server --learner export.pkl` (HOST: 127.0.0.1).
POST /segment takes the photo as multipart field `image` (as FastAPI's UploadFile
would) and answers a PNG mask. The blog used FastAPI; Starlette is FastAPI's core and
is already installed, and the handler runs learn.predict in the thread pool as FastAPI
runs a plain `def` endpoint. One prediction runs at a time: learn.predict keeps its
batch on the Learner, so parallel calls on one Learner would mix answers up. A
measurement aid, not a service.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def create_app(pkl: Path) -> Starlette:
    from benchmarks.blog_learner import load, predict_png

    learn = load(pkl)
    lock = threading.Lock()

    def predict(data: bytes) -> bytes:
        with lock:
            return predict_png(learn, data)

    async def segment(request: Request) -> Response:
        form = await request.form()
        upload = form.get("image")
        if upload is None or isinstance(upload, str):
            return JSONResponse({"error": "send the photo as multipart field 'image'"}, 400)
        data = await upload.read()
        return Response(await run_in_threadpool(predict, data), media_type="image/png")

    return Starlette(routes=[Route("/segment", segment, methods=["POST"])])


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
