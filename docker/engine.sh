#!/usr/bin/env bash
# Make a Docker Engine reachable: when `docker info` fails, install Debian's docker.io (Engine)
# and docker-compose (Compose 1.29) and start dockerd in the background (no systemd needed).
# Needs root and Debian/Ubuntu packages. Used by `make docker-engine` and, in CI, by the
# container tests. Does nothing when an engine already answers.
set -euo pipefail
if docker info >/dev/null 2>&1; then
  echo "engine: Docker Engine already running"; exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "engine: no Docker Engine reachable and not root: install Docker yourself (docs.docker.com)" >&2; exit 1
fi
if ! command -v dockerd >/dev/null || ! command -v docker-compose >/dev/null; then
  echo "engine: installing docker.io and docker-compose from Debian's packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-compose debootstrap >/dev/null
fi
echo "engine: starting dockerd (log: /var/log/dockerd.log)"
setsid nohup dockerd >/var/log/dockerd.log 2>&1 < /dev/null &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then echo "engine: ready"; exit 0; fi
  sleep 1
done
echo "engine: dockerd did not come up in 60 s; see /var/log/dockerd.log" >&2
exit 1
