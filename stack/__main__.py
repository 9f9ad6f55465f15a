"""`python -m stack`: run the whole gateway locally (what `make run` does).

Starts Envoy, the authz and ratelimit sidecars, the inference adapter and Triton under
honcho (see Procfile), plus an embedded Redis (Valkey) and PostgreSQL when REDIS_URL /
DATABASE_URL are not set. Waits until everything answers and prints the dev API key.
Ctrl-C stops everything. Ports and options come from the environment (see README).
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

from authz_service import keys
from authz_service.sealing import write_master_key
from common.settings import truthy
from stack import ROOT, RUN_DIR
from stack.ports import DEFAULT_PORTS, port
from stack.redis import socket_url

MASTER_KEY_FILE = RUN_DIR / "signing_master.key"
PROCESSES = ["triton", "adapter", "authz", "authz-http", "ratelimit", "usage", "envoy", "ready"]
USAGE_LOG = RUN_DIR / "usage" / "access.jsonl"


def port_in_use(p: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", p)) == 0


def stack_env() -> tuple[dict[str, str], list[str]]:
    """The environment for every process, and which processes to start."""
    env = dict(os.environ)
    names = list(PROCESSES)
    for name in DEFAULT_PORTS:
        env.setdefault(name, str(port(name)))
    if not env.get("REDIS_URL") and not env.get("REDIS_URL_FILE"):
        # The services reach the embedded Valkey over a unix socket (less CPU per decision
        # than loopback TCP); its TCP port stays open for redis-cli and the readiness check.
        sock = RUN_DIR / "redis" / "valkey.sock"
        unix_url = socket_url(sock)
        env["REDIS_URL"] = unix_url or f"redis://127.0.0.1:{env['EMBEDDED_REDIS_PORT']}/0"
        if unix_url:
            env["EMBEDDED_REDIS_SOCKET"] = str(sock)
        env["EMBEDDED_REDIS"] = "1"
        names.insert(0, "redis")
    if not env.get("DATABASE_URL") and not env.get("DATABASE_URL_FILE"):
        env["DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:{env['EMBEDDED_POSTGRES_PORT']}/postgres"
        env["EMBEDDED_POSTGRES"] = "1"
        names.insert(0, "postgres")
    if not env.get("AUTHZ_ADMIN_TOKEN") and not env.get("AUTHZ_ADMIN_TOKEN_FILE"):
        env["AUTHZ_ADMIN_TOKEN"] = secrets.token_urlsafe(24)  # lets the banner's register line work
    if not env.get("SIGNING_MASTER_KEY") and not env.get("SIGNING_MASTER_KEY_FILE"):
        # Written by main() on first start and kept, as the embedded database that it unlocks is.
        env["SIGNING_MASTER_KEY_FILE"] = str(MASTER_KEY_FILE)
    if not env.get("TEST_API_KEY"):
        env["TEST_API_KEY"] = keys.generate_key("sk_dev")  # a new dev key per run, as the seed does
    if truthy(env.get("GATEWAY_FUSED_LIMITS", "")):
        # Fused limits: Envoy (stack.envoy) renders without its ratelimit filter and the authz
        # service decides the limits; the ratelimit service still serves GET /v1/usage.
        env["AUTHZ_FUSED_LIMITS"] = "1"
    if env.get("INFERENCE_URL"):  # an adapter already runs elsewhere: route to it, start none
        env["INFERENCE_ENDPOINTS"] = inference_address(env["INFERENCE_URL"])
        names = [n for n in names if n not in ("triton", "adapter")]
    env["TRITON_GRPC_URL"] = f"127.0.0.1:{env['TRITON_GRPC_PORT']}"
    env["TRITON_METRICS_URL"] = f"http://127.0.0.1:{env['TRITON_METRICS_PORT']}/metrics"
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    # One short line per client request on the console (probes are never logged); JSON lines
    # remain the default everywhere else (compose, Kubernetes) and with GATEWAY_ACCESS_LOG=on.
    env.setdefault("GATEWAY_ACCESS_LOG", "compact")
    # Usage records (docs/usage.md): Envoy writes the usage log here, the usage service tails it.
    env.setdefault("GATEWAY_USAGE_LOG", str(USAGE_LOG))
    if env["GATEWAY_USAGE_LOG"].strip().lower() in ("", "0", "off", "false", "no"):
        env["GATEWAY_USAGE_LOG"] = ""  # off: no second log, no writer
        names.remove("usage")
    return env, names


def check_ports_free(env: dict[str, str], names: list[str]) -> None:
    inference = ("ADAPTER_PORT", "TRITON_HTTP_PORT", "TRITON_GRPC_PORT", "TRITON_METRICS_PORT")
    wanted = [n for n in DEFAULT_PORTS if not n.startswith("EMBEDDED_")]
    wanted = [n for n in wanted if "adapter" in names or n not in inference]
    wanted += [f"EMBEDDED_{s.upper()}_PORT" for s in ("redis", "postgres") if s in names]
    busy = [f"{n}={env[n]}" for n in wanted if port_in_use(int(env[n]))]
    if busy:
        raise SystemExit(
            f"stack: ports already in use: {', '.join(busy)}. Stop what uses them (an earlier run?) "
            "or choose other ports with these environment variables."
        )


# The seed's command-line options: each sets the environment variable the parts read.
FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--host", "GATEWAY_HOST", "address of the public listener (127.0.0.1; 0.0.0.0 for every interface)"),
    ("--port", "GATEWAY_PORT", "public port (8000)"),
    ("--inference-url", "INFERENCE_URL",
     "an inference adapter already running, http://HOST:PORT: Triton and the adapter are not started"),
    ("--rate-limit-minute", "RATE_LIMIT_MINUTE", "requests per minute per key (60)"),
    ("--rate-limit-hour", "RATE_LIMIT_HOUR", "requests per hour per key (1000)"),
    ("--cors-origins", "CORS_ORIGINS", "allowed browser origins, comma-separated, or * (*)"),
    ("--tls-cert", "GATEWAY_TLS_CERT", "PEM certificate: the gateway speaks HTTPS (with --tls-key)"),
    ("--tls-key", "GATEWAY_TLS_KEY", "PEM private key of --tls-cert"),
)  # fmt: skip


def parse_args(argv: list[str] | None = None) -> dict[str, str]:
    """The environment variables the given flags set (checked: a bad value is a usage error)."""
    parser = argparse.ArgumentParser(
        prog="python -m stack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for flag, variable, help in FLAGS:
        parser.add_argument(flag, metavar=variable, help=f"{help} (env {variable})")
    args = vars(parser.parse_args(argv))
    chosen = {variable: args[flag[2:].replace("-", "_")] for flag, variable, _ in FLAGS}
    chosen = {k: v for k, v in chosen.items() if v is not None}
    for variable in ("GATEWAY_PORT", "RATE_LIMIT_MINUTE", "RATE_LIMIT_HOUR"):
        if variable in chosen and not (chosen[variable].isdigit() and int(chosen[variable]) > 0):
            parser.error(f"{variable}: must be a positive whole number, got {chosen[variable]!r}")
    if "INFERENCE_URL" in chosen:
        try:
            inference_address(chosen["INFERENCE_URL"])
        except ValueError as exc:
            parser.error(str(exc))
    return chosen


def inference_address(url: str) -> str:
    """host:port of an http:// adapter URL (Envoy's inference pool)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or not parts.port:
        raise ValueError(f"--inference-url must look like http://HOST:PORT, got {url!r}")
    return f"{parts.hostname}:{parts.port}"


def main(argv: list[str] | None = None) -> None:
    os.environ.update(parse_args(argv))
    env, names = stack_env()
    check_ports_free(env, names)
    RUN_DIR.mkdir(exist_ok=True)
    if env["GATEWAY_USAGE_LOG"]:  # Envoy creates the file, not its folder
        Path(env["GATEWAY_USAGE_LOG"]).parent.mkdir(parents=True, exist_ok=True)
    if env.get("SIGNING_MASTER_KEY_FILE") == str(MASTER_KEY_FILE):
        write_master_key(MASTER_KEY_FILE)
    print(f"stack: starting {', '.join(names)} (logs below, prefixed by process)", flush=True)
    honcho = str(Path(sys.executable).parent / "honcho")
    os.chdir(ROOT)
    # No env file: honcho would read the repo's .env, which `make compose-up` writes for compose.
    no_env_file = ["-e", os.devnull]
    os.execve(
        honcho, [honcho, "-f", str(ROOT / "Procfile"), "-d", str(ROOT), *no_env_file, "start", *names], env
    )


if __name__ == "__main__":
    main()
