# syntax=docker/dockerfile:1
# payhook image: `payhook serve` by default; the same image runs `payhook worker` and
# `payhook migrate`. Build: docker build -t payhook .
# The patch version is pinned so the image and runtime.txt name the same Python.
ARG PYTHON_VERSION=3.11.14

FROM python:${PYTHON_VERSION}-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build
# Dependencies first, from the hash-locked file, so this layer survives code changes.
COPY requirements/prod.lock requirements/prod.lock
RUN pip install --require-hashes -r requirements/prod.lock
COPY pyproject.toml README.md ./
COPY src ./src
# The wheel alone: every dependency is already installed, with its hash checked.
RUN pip wheel --no-deps --wheel-dir /build/dist . \
    && pip install --no-deps /build/dist/payhook-*.whl

FROM python:${PYTHON_VERSION}-slim AS runtime
ARG UID=10001
RUN groupadd --gid ${UID} payhook \
    && useradd --uid ${UID} --gid payhook --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin payhook \
    && mkdir /app && chown payhook:payhook /app
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8000
# /app is the working directory so the SQLite default (./payhook.db) is writable.
WORKDIR /app
USER ${UID}:${UID}
EXPOSE 8000
# Liveness only (GET /): a database outage must not get healthy API containers restarted.
# Slim images have no curl; urlopen raises (exit 1) on a refused connection or a non-2xx.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/' % os.environ.get('PORT', '8000'), timeout=4)"]
CMD ["payhook", "serve"]
