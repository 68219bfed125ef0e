"""The BentoML peer: the same ONNX file, pre- and post-processing behind BentoML (a baseline).

`bentoml serve benchmarks.bento_service:TileSegmenter` from the repository root, in a venv
with benchmarks/requirements-bentoml.txt; MODEL_PATH names the ONNX file (default
models/segmenter.onnx). POST /segment takes the photo as multipart field `image`, as the
service does, and answers the PNG mask. Everything between the upload and the answer is
the service's own code (service.imaging, service.segmenter), so what differs is BentoML:
its server, request parsing (the upload lands in a temporary file) and worker model.
Written as BentoML's documentation shows a service, with its defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import bentoml
from bentoml.validators import ContentType

from service.config import DEFAULT_MODEL_PATH, Settings
from service.imaging import decode_gray, encode_png, read_header
from service.segmenter import Segmenter

# The service's default limit: a header declaring more pixels is refused before decoding.
MAX_IMAGE_PIXELS = Settings().max_image_pixels


@bentoml.service
class TileSegmenter:
    def __init__(self) -> None:
        self.segmenter = Segmenter.from_onnx(os.environ.get("MODEL_PATH") or DEFAULT_MODEL_PATH)

    @bentoml.api(route="/segment")
    def segment(self, image: Path) -> Annotated[bytes, ContentType("image/png")]:
        data = image.read_bytes()
        gray = decode_gray(data, read_header(data, MAX_IMAGE_PIXELS))
        return encode_png(self.segmenter.segment(gray).mask)
