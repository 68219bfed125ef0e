"""The plain FastAPI peer: what an engineer writes in an afternoon around the same model.

`PORT=8002 python -m benchmarks.fastapi_app` (HOST: 127.0.0.1; MODEL_PATH: default
models/segmenter.onnx), in a venv with benchmarks/requirements-fastapi.txt. POST /segment
takes the photo as multipart field `image` (FastAPI's UploadFile), decodes it with
cv2.imdecode, runs the service's own Segmenter and answers the PNG mask, encoded by the
service's function so that both answers cost the same. A plain `def` endpoint: FastAPI
runs it in its thread pool, so requests run inference side by side on the one session.
No admission queue, header checks or limits: what the service adds is what this lacks.
"""

from __future__ import annotations

import os
import sys

import cv2
import numpy as np
import uvicorn
from fastapi import FastAPI, HTTPException, UploadFile
from fastapi.responses import Response

from service.config import DEFAULT_MODEL_PATH
from service.imaging import encode_png
from service.segmenter import Segmenter

segmenter = Segmenter.from_onnx(os.environ.get("MODEL_PATH") or DEFAULT_MODEL_PATH)
app = FastAPI(title="Tile defects, plain FastAPI")


@app.post("/segment")
def segment(image: UploadFile) -> Response:
    gray = cv2.imdecode(np.frombuffer(image.file.read(), np.uint8), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise HTTPException(400, "The upload is not an image OpenCV can read.")
    return Response(encode_png(segmenter.segment(gray).mask), media_type="image/png")


def main() -> int:
    uvicorn.run(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8002")),
        log_level="warning",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
