# The API as a small CPU container: onnxruntime, OpenCV and Starlette, no torch/fastai/dvc.
#
#   docker build -t tile-defects .
#   docker run --rm -p 8000:8000 tile-defects
#   curl -F image=@tile.jpg localhost:8000/segment -o mask.png
#
# It sits at the repository root because Heroku (heroku.yml) builds with the Dockerfile's
# own folder as the context, and the COPY sources below are relative to the root. The GPU
# image is docker/Dockerfile.gpu, built from the root too.
#
# The base is pinned by digest so that a rebuild gets the same OS and Python; the digest
# is that of python:3.11-slim-bookworm on linux/amd64 as recorded on 2026-08-24. Refresh:
#   docker buildx imagetools inspect python:3.11-slim-bookworm
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

# --- build: the serving packages, from hash-locked wheels, in a venv without pip ---------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# docker/serve.lock is requirements/serve.txt with the hash of every file (make lock-images):
# --require-hashes refuses any other file, --only-binary any build step.
COPY docker/serve.lock /tmp/serve.lock
RUN python -m venv --without-pip /opt/venv \
    && python -m pip --python /opt/venv/bin/python install --no-cache-dir \
        --no-deps --require-hashes --only-binary=:all: -r /tmp/serve.lock

# --- runtime: Python, the venv, the service code and the model; nothing else -----------
FROM ${PYTHON_IMAGE} AS runtime
# A fixed non-root user; files stay root-owned and world-readable, so the app cannot
# rewrite itself and a platform that picks its own uid (Heroku does) can still read them.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-log-init --no-create-home \
        --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY service/ /app/service/
COPY models/segmenter.onnx /app/models/segmenter.onnx
# The model's registry version (v1.2.3 of the tag segmenter@v1.2.3), which the deploy
# workflow passes for a registered commit: `docker inspect` shows it as the image's
# version and /info reports it. Declared after the COPYs, so that images of another
# version share every layer above.
ARG MODEL_REGISTRY_VERSION=""
LABEL org.opencontainers.image.version="${MODEL_REGISTRY_VERSION}"

# Settings for a small dyno (512 MB, a share of a few cores): one process, two
# onnxruntime threads, a short queue so that a burst gets a quick 503 + Retry-After
# rather than piling decoded images into memory. Heroku sets PORT; its config vars
# override any of these (heroku config:set MAX_QUEUE=8). Images are capped at 4 MP: one
# at the service's 25 MP default takes ~0.9 GB to segment, more than a small dyno has,
# and the largest tile in the dataset is 0.25 MP. glibc gives each thread that allocates
# its own malloc arena and keeps freed memory there: after the reliability fuzz run (6,000
# inputs up to 25 MP) the server held 457 MiB with the default arenas, 322 MiB with two.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    MODEL_PATH=/app/models/segmenter.onnx \
    MODEL_REGISTRY_VERSION=${MODEL_REGISTRY_VERSION} \
    INFERENCE_THREADS=2 \
    MAX_QUEUE=4 \
    MAX_IMAGE_PIXELS=4000000 \
    MALLOC_ARENA_MAX=2 \
    LOG_LEVEL=info

USER 10001:10001
EXPOSE 8000
# For `docker run` and orchestrators that honour it (Heroku ignores it and probes the port).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/health', timeout=4)"]
# Exec form: python is PID 1 and gets Heroku's SIGTERM for the graceful shutdown.
CMD ["python", "-m", "service"]
