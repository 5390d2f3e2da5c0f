# syntax=docker/dockerfile:1
# The varia worker image. FFmpeg comes from the imageio-ffmpeg wheel (no apt download).
# Signals: run it with an init process as PID 1 (compose sets `init: true`; plain Docker:
# `docker run --init`), so SIGTERM reaches `varia worker`, which stops its FFmpeg by the three
# stages and lets the renders retry on another worker; zombies are reaped.
FROM python:3.12.8-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 varia \
    && useradd --system --uid 10001 --gid varia --create-home --home-dir /home/varia varia \
    && mkdir -p /media \
    && chown varia:varia /media

WORKDIR /opt/varia
COPY pyproject.toml README.md ./
COPY varia ./varia
RUN pip install . \
    && python -c "import imageio_ffmpeg, subprocess; subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), '-version'], check=True, capture_output=True)"

USER varia:varia
WORKDIR /home/varia

# Healthy while this container's worker polls its task queue on the Temporal server.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "-m", "varia.health"]

STOPSIGNAL SIGTERM
CMD ["varia", "worker"]
