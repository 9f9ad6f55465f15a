# Local stand-in for python:3.11-slim-bookworm where no registry is reachable: Debian's own
# Python 3.11 on the debootstrapped base (docker/base-image.sh). `python` is on PATH and
# libpython3.11 is shared, as in the official image; pip is used only inside venvs.
ARG BASE_IMAGE=inference-gateway-bookworm:12
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv libpython3.11 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s /usr/bin/python3 /usr/local/bin/python
ENV LANG=C.UTF-8
CMD ["python3"]
