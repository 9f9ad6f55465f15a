# One image for the Python services: authz_service, ratelimit_service, the inference adapter,
# and the one-shot Envoy config renderer. No secrets are baked in: everything comes from env.
FROM python:3.11.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY requirements-services.txt ./
RUN pip install -r requirements-services.txt

COPY pyproject.toml ./
COPY common/ common/
COPY authz_service/ authz_service/
COPY ratelimit_service/ ratelimit_service/
COPY inference/__init__.py inference/__init__.py
COPY inference/adapter/ inference/adapter/
COPY envoy/ envoy/

USER 10001
# Each compose service picks its command: python -m authz_service | ratelimit_service | inference.adapter
CMD ["python", "-m", "common.probes", "--help"]
