"""Schemathesis cases from the adapter's and the key API's OpenAPI schemas, sent through Envoy with a
valid key (positive and negative generation): no 5xx, every error body in the JSON error shape."""

from __future__ import annotations

import contextlib
import time
from collections import Counter

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.authz_fixtures import ADMIN_TOKEN
from tests.conftest import Gateway
from tests.drills.conftest import DrillLog, Row
from tests.drills.wire import is_error_shape
from tests.envoy_fixtures import EnvoyUnderTest

EXAMPLES_PER_OPERATION_AND_MODE = 200
MINIMUM_TOTAL = 1950  # with the hand list (~60 cases) the suite sends ≥ 2,000 hostile requests


def run_operation(
    operation, mode: GenerationMode, base_url: str, headers: dict[str, str], tally: Counter
) -> None:
    @settings(
        max_examples=EXAMPLES_PER_OPERATION_AND_MODE,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def one(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        tally["sent"] += 1
        tally[f"{response.status_code // 100}xx"] += 1
        where = f"{case.method} {case.formatted_path} ({mode.value}) {case.body!r:.300}: "
        where += f"{response.status_code} {response.content[:300]!r}"
        assert response.status_code < 500, where
        assert is_error_shape(response.status_code, response.content), where
        if response.status_code == 201 and "key" in response.json():
            tally.update({f"key:{response.json()['key']}": 1})

    # An operation with nothing to get wrong (no parameters, no body) has no negative cases.
    with contextlib.suppress(Unsatisfiable):
        one()


@pytest.mark.slow
def test_schemathesis_through_envoy(
    loose_gateway: EnvoyUnderTest, gateway: Gateway, inference_adapter: str, drill_log: DrillLog
) -> None:
    key = gateway.new_key()
    drill_log.keys.add(key)
    schemas = [
        schemathesis.openapi.from_dict(httpx.get(f"{inference_adapter}/openapi.json", timeout=10).json()),
        schemathesis.openapi.from_dict(
            httpx.get(f"{loose_gateway.url}/auth/openapi.json", timeout=10).json()
        ),
    ]
    headers = {"Authorization": f"Bearer {key}", "X-Admin-Token": ADMIN_TOKEN}
    tally: Counter = Counter()
    started = time.monotonic()
    for schema in schemas:
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                run_operation(operation, mode, loose_gateway.url, headers, tally)
    elapsed = time.monotonic() - started
    created = [name.removeprefix("key:") for name in tally if name.startswith("key:")]
    drill_log.keys.update(created)
    assert tally["sent"] >= MINIMUM_TOTAL, tally
    codes = ", ".join(f"{tally[c]} {c}" for c in ("2xx", "3xx", "4xx", "5xx") if tally[c])
    drill_log.record(
        Row(
            "hostile: schemathesis (adapter + key API schemas, positive and negative)",
            "no 5xx, every error JSON-shaped",
            f"{tally['sent']} cases in {elapsed:.0f} s: {codes}",
            "tests/drills/test_generated_input.py::test_schemathesis_through_envoy",
            sent=tally["sent"],
            failed=tally["5xx"],
        )
    )
