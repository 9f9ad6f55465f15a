"""Fixtures for the fault drills and hostile-input suite.

Every drill records one row (drill, expected, observed figures) in `DrillLog`; at session end
the rows go to `<run_dir>/drills.json` and `.run/drills/drills.json`, and
`python -m tests.drills.report .run/drills/drills.json > docs/drills.md` renders the table.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.authz_fixtures import create_key
from tests.conftest import Gateway
from tests.envoy_fixtures import EnvoyUnderTest, spawn_envoy
from tests.procs import ROOT

RESULTS_DIR = ROOT / ".run" / "drills"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a long drill (still runs in CI, shortened)")


@dataclass
class Row:
    drill: str
    expected: str
    observed: str
    test: str
    sent: int = 0
    failed: int = 0
    over_admitted: int = 0
    auth_bypasses: int = 0
    peak_rss_mib: dict[str, float] = field(default_factory=dict)


@dataclass
class DrillLog:
    rows: list[Row] = field(default_factory=list)
    # Every plaintext key a drill created: the secrets drill greps the logs for each one.
    keys: set[str] = field(default_factory=set)
    # Other secrets a drill handled (signing secrets, the signing master key): searched as they are.
    secrets: set[str] = field(default_factory=set)

    def record(self, row: Row) -> None:
        self.rows.append(row)


@pytest.fixture(scope="session")
def drill_log(run_dir: Path) -> Iterator[DrillLog]:
    log = DrillLog()
    yield log
    payload = json.dumps([asdict(row) for row in log.rows], indent=2)
    (run_dir / "drills.json").write_text(payload)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "drills.json").write_text(payload)


@pytest.fixture
def fresh_key(gateway: Gateway, drill_log: DrillLog) -> Iterator[str]:
    """A new key (3 requests/minute on the session stack), remembered for the secrets drill."""
    key = gateway.new_key()
    drill_log.keys.add(key)
    yield key


@pytest.fixture
def key(database_url: str, drill_log: DrillLog) -> str:
    """A new key in the session Postgres with the plan defaults, remembered for the secrets drill."""
    plaintext, _ = create_key(database_url)
    drill_log.keys.add(plaintext)
    return plaintext


@pytest.fixture(scope="session")
def loose_gateway(
    run_dir: Path,
    loose_authz_port: int,
    loose_ratelimit_port: int,
    authz_http_port: int,
    ratelimit_ports: tuple[int, int],
    inference_adapter: str,
) -> Iterator[EnvoyUnderTest]:
    """An Envoy like the session one whose limits are 1,000,000/minute: for thousands of requests."""
    overrides = {
        "authz_port": str(loose_authz_port),
        "ratelimit_port": str(loose_ratelimit_port),
        "authz_http_port": str(authz_http_port),
        "ratelimit_http_port": str(ratelimit_ports[1]),
        "adapter_port": str(httpx.URL(inference_adapter).port),
    }
    envoy = spawn_envoy(run_dir, "drills-envoy", overrides)
    yield envoy
    envoy.proc.stop()
