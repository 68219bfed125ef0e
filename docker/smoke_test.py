"""Smoke test of a running API, run by the API's own Python (inside the container in CI).

    docker exec -i api python - < docker/smoke_test.py            # a generated tile
    python docker/smoke_test.py http://127.0.0.1:8000 tile.jpg    # a real one

Uses only what the serving image has (the standard library, numpy, OpenCV): waits for
/ready, segments one image, checks the answer is a mask of the image's own size, reads
/info and /metrics, and checks that no training package is importable. Exit 0 on success.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import cv2
import numpy as np

FORBIDDEN = ("torch", "torchvision", "fastai", "dvc", "dvclive", "onnx")


def wait_ready(base_url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base_url}/ready", timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"error: {base_url}/ready did not answer 200 within {timeout} s")
        time.sleep(0.5)


def generated_tile() -> bytes:
    """A grey 320x240 tile with a dark blob, as JPEG: no dataset needed in the image."""
    tile = np.full((240, 320), 150, np.uint8)
    cv2.circle(tile, (160, 120), 18, 40, thickness=-1)
    return cv2.imencode(".jpg", tile)[1].tobytes()


def segment(base_url: str, jpeg: bytes) -> tuple[int, str, bytes]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="tile.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + jpeg
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{base_url}/segment",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return answer.status, answer.headers.get("Content-Type", ""), answer.read()


def main(argv: list[str]) -> int:
    base_url = argv[1] if len(argv) > 1 else f"http://127.0.0.1:{os.environ.get('PORT', '8000')}"
    jpeg = Path(argv[2]).read_bytes() if len(argv) > 2 else generated_tile()
    present = [name for name in FORBIDDEN if importlib.util.find_spec(name) is not None]
    if present:
        raise SystemExit(f"error: the serving environment has {', '.join(present)}")
    wait_ready(base_url)
    status, content_type, mask_png = segment(base_url, jpeg)
    if status != 200 or content_type != "image/png":
        raise SystemExit(f"error: /segment answered {status} {content_type}")
    photo = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED)
    mask = cv2.imdecode(np.frombuffer(mask_png, np.uint8), cv2.IMREAD_UNCHANGED)
    if photo is None or mask is None:
        raise SystemExit("error: the photo or the mask does not decode")
    if mask.shape[:2] != photo.shape[:2]:
        raise SystemExit(f"error: mask {mask.shape[:2]} for a photo of {photo.shape[:2]}")
    with urllib.request.urlopen(f"{base_url}/info", timeout=10) as answer:
        info = json.load(answer)
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as answer:
        answer.read()
    defect = int((mask > 0).sum())
    print(f"ok: {photo.shape[1]}x{photo.shape[0]} photo, {defect} defect pixels; info: {info}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
