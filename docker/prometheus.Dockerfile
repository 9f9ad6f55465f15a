# Local stand-in for prom/prometheus:v2.42.0 where no registry is reachable: Debian bookworm's
# prometheus package (2.42.0) on the debootstrapped base, with the official image's paths,
# user and default flags.
ARG BASE_IMAGE=inference-gateway-bookworm:12
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /prometheus /etc/prometheus && chown nobody:nogroup /prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
