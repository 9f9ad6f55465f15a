"""Readiness probes shared by `make run`'s banner, container healthchecks and tests.

`python -m common.probes grpc HOST:PORT` / `http URL` / `tcp HOST:PORT` exits 0 when the
target answers (SERVING, HTTP 200, accepting connections), 1 otherwise.
"""

from __future__ import annotations

import argparse
import socket
import sys
import urllib.request


def tcp_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def grpc_serving(target: str, timeout: float = 1.0) -> bool:
    """grpc.health.v1 Check on `target` (host:port) says SERVING."""
    # Imported here: container health checks run this module every few seconds, and the
    # http/tcp probes should not pay grpc's import time.
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with grpc.insecure_channel(target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
        return reply.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m common.probes", description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["grpc", "http", "tcp"])
    parser.add_argument("target", help="HOST:PORT for grpc/tcp, a URL for http")
    args = parser.parse_args(argv)
    if args.kind == "http":
        ok = http_ok(args.target)
    else:
        host, _, port = args.target.rpartition(":")
        ok = grpc_serving(args.target) if args.kind == "grpc" else tcp_open(host, int(port))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
