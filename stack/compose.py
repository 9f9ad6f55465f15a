"""`python -m stack.compose up|down`: the whole gateway from compose.yaml on a Docker Engine.

`up` prepares the images (stack.images: official where a registry answers, local equivalents
otherwise), writes the settings compose.yaml needs to an env file once (a Postgres password,
the admin token, a dev key; never overwritten, so the database volume keeps working), builds
the project's images, starts the stack detached, waits until Envoy answers /ready through the
published port and prints the gateway URL, the dev key and the admin token.
`down` removes the project's containers, networks and volumes and checks that none is left.
The test suite (tests/containers/) drives the same `Compose` class.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from authz_service import keys
from authz_service.sealing import new_master_key
from stack import ROOT, images

COMPOSE_FILE = ROOT / "compose.yaml"
DEFAULT_PROJECT = "inference-gateway"
# Our own images, built through compose.yaml's build sections (one service per image).
OWN_IMAGES = {"adapter": "inference-gateway:0.1.0", "envoy": "inference-gateway-envoy:0.1.0",
              "triton": "inference-gateway-triton:0.1.0"}  # fmt: skip


def say(message: str) -> None:
    print(f"[compose] {message}", flush=True)


def compose_program() -> list[str]:
    """Compose v2 (`docker compose`) where the plugin exists, else Compose 1.29 (`docker-compose`)."""
    if subprocess.run([images.DOCKER, "compose", "version"], capture_output=True).returncode == 0:
        return [images.DOCKER, "compose"]
    return ["docker-compose"]


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, sep, value = line.partition("=")
            if sep and not line.lstrip().startswith("#"):
                values[name.strip()] = value.strip()
    return values


def write_env_file(path: Path, wanted: dict[str, str]) -> dict[str, str]:
    """Keep every value already in the file (passwords must match the volume), add what is missing.

    `wanted` values are defaults, except the image choice, which follows this machine's registry.
    """
    values = read_env_file(path)
    for name, value in wanted.items():
        if name.endswith("_IMAGE") or name not in values:
            values[name] = value
    header = "# Written by `python -m stack.compose up` (make compose-up); secrets: keep this file private.\n"
    path.write_text(header + "".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)
    return values


def new_settings() -> dict[str, str]:
    return {
        "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
        "AUTHZ_ADMIN_TOKEN": secrets.token_urlsafe(24),
        "SIGNING_MASTER_KEY": new_master_key(),  # seals the keys' request-signing secrets
        "TEST_API_KEY": keys.generate_key("sk_dev"),
    }


@dataclass
class Compose:
    """One compose project of compose.yaml: its name, its env file, the Compose program."""

    project: str = DEFAULT_PROJECT
    env_file: Path = ROOT / ".env"
    program: list[str] = field(default_factory=compose_program)

    def command(self, *args: str) -> list[str]:
        files = ["-f", str(COMPOSE_FILE)]
        return [*self.program, "-p", self.project, "--env-file", str(self.env_file), *files, *args]

    def run(self, *args: str, check: bool = True, capture: bool = False, timeout: float | None = None) -> str:
        result = subprocess.run(
            self.command(*args), cwd=ROOT, capture_output=capture, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if check and result.returncode != 0:
            detail = (result.stderr or "")[-2000:] if capture else ""
            raise RuntimeError(f"compose {' '.join(args)} failed ({result.returncode}) {detail}")
        return result.stdout or ""

    def container_ids(self, service: str) -> list[str]:
        return self.run("ps", "-q", service, capture=True).split()

    def gateway_url(self) -> str:
        """The host address compose published Envoy's port 8000 on."""
        published = self.run("port", "envoy", "8000", capture=True).strip().splitlines()[-1]
        host, _, port = published.rpartition(":")
        host = "127.0.0.1" if host in ("0.0.0.0", "", "[::]", "::") else host
        return f"http://{host}:{port}"

    def health(self) -> dict[str, str]:
        """container name → health (or state when it has no health check)."""
        ids = self.run("ps", "-q", capture=True).split()
        if not ids:
            return {}
        fmt = "{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}"
        out = subprocess.run(
            [images.DOCKER, "inspect", "-f", fmt, *ids], capture_output=True, text=True
        ).stdout
        return {
            name.lstrip("/"): status for name, status in (line.split(" ", 1) for line in out.splitlines())
        }

    def build(self) -> None:
        """Build the project's images (cached layers make an unchanged build a few seconds)."""
        for service, tag in OWN_IMAGES.items():
            say(f"building {tag} (compose service {service})")
            # Compose 1.29 drives the classic builder, which keeps a failed step's container.
            self.run("build", *(["--force-rm"] if self.program == ["docker-compose"] else []), service)

    def up(self, scale: dict[str, int] | None = None, profiles: list[str] | None = None) -> None:
        args = [arg for p in profiles or [] for arg in ("--profile", p)] + ["up", "-d", "--no-build"]
        args += [arg for s, n in (scale or {}).items() for arg in ("--scale", f"{s}={n}")]
        try:
            self.run(*args)
        except RuntimeError as exc:  # say why: a dependency that never got healthy logged it
            logs = self.run("logs", "--no-color", "--tail", "15", check=False, capture=True)
            raise RuntimeError(f"{exc}\nlast lines of each container:\n{logs}") from None

    def wait_ready(self, timeout: float = 300.0) -> str:
        """Poll Envoy's /ready through the published port; report who is not healthy yet."""
        deadline, last_report = time.monotonic() + timeout, 0.0
        url = self.gateway_url()
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/ready", timeout=2) as response:
                    if response.status == 200:
                        return url
            except OSError:
                pass
            if time.monotonic() - last_report > 10:
                waiting = {n: s for n, s in self.health().items() if s not in ("healthy", "running")}
                say(f"waiting for {url}/ready; not ready yet: {waiting or 'envoy routes'}")
                last_report = time.monotonic()
            time.sleep(0.5)
        raise TimeoutError(f"gateway at {url} not ready after {timeout:.0f}s; health: {self.health()}")

    def down(self, timeout: float = 120.0) -> None:
        self.run("down", "-v", "--remove-orphans", "--timeout", "35", timeout=timeout)

    def leftovers(self) -> list[str]:
        """Containers, networks and volumes that still carry this project's label."""
        label = f"label=com.docker.compose.project={self.project}"
        found = []
        for kind, listing in (("container", ["ps", "-aq"]), ("network", ["network", "ls", "-q"]),
                              ("volume", ["volume", "ls", "-q"])):  # fmt: skip
            out = subprocess.run([images.DOCKER, *listing, "--filter", label], capture_output=True, text=True)
            found += [f"{kind} {item}" for item in out.stdout.split()]
        return found


def prepare(compose: Compose, mode: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Images chosen (and local ones built), env file written, own images built."""
    chosen = images.choose_mode(mode)
    if chosen == "local":
        images.prepare_local()
    settings = write_env_file(
        compose.env_file, {**new_settings(), **images.selection(chosen), **(extra or {})}
    )
    compose.build()
    return settings


def banner(url: str, settings: dict[str, str], took: float) -> str:
    key, token = settings.get("TEST_API_KEY", ""), settings.get("AUTHZ_ADMIN_TOKEN", "")
    return "\n".join([
        f"Gateway ready in {took:.0f}s at {url}",
        f"  dev key      {key}",
        f"  admin token  {token}",
        f"  try          curl -H 'Authorization: Bearer {key}' "
        f"-d '{{\"input_text\":\"Hello, world!\"}}' {url}/v1/embed",
        f"  new key      curl -H 'X-Admin-Token: {token}' -H 'content-type: application/json' "
        f"-d '{{\"name\":\"me\"}}' {url}/auth/register",
        "  logs         docker compose logs -f envoy    (or docker-compose)",
        "  stop         make compose-down",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m stack.compose",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Compose reads GATEWAY_PUBLISH (default 8000: where Envoy's port is published), "
        "RATE_LIMIT_MINUTE/HOUR, CORS_ORIGINS and the *_IMAGE variables from the environment or env file.",
    )
    parser.add_argument(
        "action", choices=["up", "down"], help="up: build, start, wait, print; down: remove all"
    )
    parser.add_argument(
        "--project",
        default=os.environ.get("COMPOSE_PROJECT_NAME", DEFAULT_PROJECT),
        help=f"compose project name (env COMPOSE_PROJECT_NAME, default {DEFAULT_PROJECT})",
    )
    parser.add_argument("--env-file", type=Path, default=ROOT / ".env", help="settings file (default .env)")
    parser.add_argument(
        "--images",
        default=os.environ.get("GATEWAY_IMAGES", "auto"),
        help="auto|official|local: official images where a registry answers, else local builds "
        "(env GATEWAY_IMAGES)",
    )
    parser.add_argument(
        "--scale", action="append", default=[], metavar="SERVICE=N", help="replicas, repeatable"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for /ready")
    args = parser.parse_args(argv)
    compose = Compose(args.project, args.env_file)
    if args.action == "down":
        compose.down()
        left = compose.leftovers()
        say("removed everything" if not left else f"still there: {', '.join(left)}")
        raise SystemExit(1 if left else 0)
    try:
        scale = {s: int(n) for s, _, n in (item.partition("=") for item in args.scale)}
    except ValueError:
        raise SystemExit("[compose] --scale takes SERVICE=N, e.g. --scale authz=2") from None
    settings = prepare(compose, args.images)
    started = time.monotonic()
    say("starting the stack (docker compose up -d)")
    compose.up(scale)
    try:
        url = compose.wait_ready(args.timeout)
    except TimeoutError as exc:
        raise SystemExit(f"[compose] {exc}") from None
    print(banner(url, settings, time.monotonic() - started), flush=True)


if __name__ == "__main__":
    sys.exit(main())
