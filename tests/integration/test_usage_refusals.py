"""Usage records of refused requests: a usable key refused by authz (bad signature, address outside
its allowlist) is that key's client error; revoked keys and unknown keys are nobody's usage."""

from __future__ import annotations

import time

import httpx

from authz_service.sealing import SecretBox
from authz_service.store import new_key_id, new_signing_secret
from tests.authz_fixtures import create_key, fetchval
from tests.signing_keys import SIGNING_MASTER_KEY
from tests.usage_fixtures import UsageStack, wait_for

BODY = {"status": 200, "tokens": 2}


def embed(stack: UsageStack, key: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{stack.envoy.url}/v1/embed", json=BODY, headers={"X-API-Key": key, **headers}, timeout=10
    )


def test_refusals_of_a_usable_key_count_as_its_client_errors(
    usage_stack: UsageStack, database_url: str
) -> None:
    key_id = new_key_id()
    _, sealed = new_signing_secret(SecretBox(SIGNING_MASTER_KEY), key_id)
    signer, _ = create_key(database_url, key_id=key_id, signing_secret_enc=sealed)
    fenced, fenced_record = create_key(database_url, allowed_ips=["10.0.0.0/8"])
    revoked, revoked_record = create_key(database_url)
    fetchval(database_url, "UPDATE api_keys SET revoked_at = now() WHERE id = $1", revoked_record.id)

    unsigned = embed(usage_stack, signer)
    assert unsigned.status_code == 401 and unsigned.json()["reason"] == "signature_missing"
    assert embed(usage_stack, fenced).status_code == 403
    assert embed(usage_stack, revoked).status_code == 401

    def stored(key: str) -> dict[str, int]:
        return usage_stack.postgres.totals([key])

    wait_for(lambda: stored(key_id)["requests"] == 1 and stored(fenced_record.id)["requests"] == 1, 15)
    for refused in (key_id, fenced_record.id):
        assert stored(refused) == {**stored(refused), "requests": 1, "client_errors": 1, "tokens": 0}
    time.sleep(1.5)  # a revoked key's refusal would have been flushed and stored by now
    assert stored(revoked_record.id)["requests"] == 0
