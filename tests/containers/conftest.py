"""Fixtures for the container tests: a Docker Engine, and compose.yaml brought up once.

The stack is the file users run (compose.yaml), started through the same code as
`make compose-up` (stack.compose), as its own compose project with the gateway published on a
free loopback port, with 2 authz and 3 ratelimit replicas. Torn down (containers, networks,
volumes) after the last test of this folder, also when a test fails.

Without a reachable Docker Engine these tests skip with the reason, except in CI (CI=true):
there docker/engine.sh installs and starts one, and anything missing is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from stack.compose import Compose, prepare
from tests.procs import ROOT, free_port

RESULTS = ROOT / ".run" / "containers" / "drills.json"
# This run's drill figures, printed in the terminal summary.
FIGURES: list[dict] = []
SCALE = {"authz": 2, "ratelimit": 3}
# Image builds on a cold cache (debootstrap, wheels, Triton) take minutes: the first test pays them.
SETUP_TIMEOUT_S = 1500


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def engine_reachable() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.timeout(SETUP_TIMEOUT_S))


@pytest.fixture(scope="package")
def docker_engine() -> None:
    if engine_reachable():
        return
    if not in_ci():
        pytest.skip(
            "no Docker Engine reachable (`docker info` failed): `make docker-engine` installs and starts "
            "one (Debian/Ubuntu, root); with CI=true these tests install it themselves and must run"
        )
    result = subprocess.run(["bash", str(ROOT / "docker" / "engine.sh")], timeout=600)
    assert result.returncode == 0 and engine_reachable(), (
        "CI: docker/engine.sh could not start a Docker Engine"
    )


@dataclass
class Stack:
    """The running compose project, seen from the host."""

    compose: Compose
    url: str
    settings: dict[str, str]
    figures: list[dict] = field(default_factory=lambda: FIGURES)

    @property
    def admin_token(self) -> str:
        return self.settings["AUTHZ_ADMIN_TOKEN"]

    def client(self, timeout: float = 10) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def new_key(self, **fields: object) -> str:
        """A key made through /auth/register with the admin token (its own rate-limit windows)."""
        body = {"name": "container-test", **fields}
        with self.client() as http:
            response = http.post("/auth/register", json=body, headers={"X-Admin-Token": self.admin_token})
        assert response.status_code in (200, 201), response.text
        return response.json()["api_key"]

    def containers(self, service: str) -> list[str]:
        return self.compose.container_ids(service)

    def docker(self, *args: str, timeout: float = 60) -> str:
        result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}"
        return result.stdout

    def network(self) -> str:
        return f"{self.compose.project}_default"

    def envoy_admin(self, path: str) -> str:
        """GET on Envoy's admin port from inside its container (the port is not published)."""
        envoy = self.containers("envoy")[0]
        code = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())"
        return self.docker("exec", envoy, "python", "-c", code, f"http://127.0.0.1:9901{path}")

    def wait_healthy(self, service: str, count: int, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            health = self.compose.health()
            healthy = [n for n, s in health.items() if f"_{service}_" in n and s == "healthy"]
            if len(healthy) >= count:
                return
            time.sleep(1)
        raise AssertionError(
            f"{service}: fewer than {count} healthy after {timeout}s: {self.compose.health()}"
        )

    def record(self, drill: str, expected: str, observed: str, **numbers: object) -> None:
        """One row of the container drills' results (printed at the end of the run, saved as JSON)."""
        self.figures.append({"drill": drill, "expected": expected, "observed": observed, **numbers})


@pytest.fixture(scope="package")
def stack(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("compose")
    compose = Compose(project=f"igtest{os.getpid()}", env_file=workdir / "compose.env")
    extra = {"GATEWAY_PUBLISH": f"127.0.0.1:{free_port()}"}
    started: Stack | None = None
    try:
        settings = prepare(compose, os.environ.get("GATEWAY_IMAGES", "auto"), extra)
        began = time.monotonic()
        compose.up(SCALE)
        url = compose.wait_ready(300)
        started = Stack(compose, url, settings)
        started.record("compose up → /ready", "≤ 60 s warm", f"{time.monotonic() - began:.0f} s", scale=SCALE)
        yield started
    finally:
        logs = compose.run("logs", "--no-color", "--tail", "200", check=False, capture=True)
        (workdir / "compose.log").write_text(logs)
        compose.down()
        if started is not None:
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(started.figures, indent=2))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("container drills (figures)")
        for row in FIGURES:
            terminalreporter.write_line(f"{row['drill']}: {row['observed']}")
