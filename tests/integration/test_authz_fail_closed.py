"""Fail closed: with Postgres stopped, a key that is not cached gets 503; a cached one still works.

Runs on a private Postgres (the `isolated_authz` fixture) so stopping it affects no other test.
"""

from __future__ import annotations

import time

import httpx

from tests.authz_fixtures import IsolatedAuthz, assert_error, bearer

EMBED = "/v1/embed"


def test_store_down_is_503_for_uncached_keys_and_recovers(isolated_authz: IsolatedAuthz) -> None:
    cached, _ = isolated_authz.new_key()
    uncached, _ = isolated_authz.new_key()
    with httpx.Client(base_url=isolated_authz.url, timeout=10) as http:
        assert http.post(EMBED, json={"input_text": "a"}, headers=bearer(cached)).status_code == 200

        isolated_authz.stop_postgres()
        response = http.post(EMBED, json={"input_text": "b"}, headers=bearer(uncached))
        body = assert_error(response, 503, "SERVICE_UNAVAILABLE")
        # The authz service decided (not Envoy failing to reach it). Envoy's 503 local-reply
        # mapper may replace our detail with its own, which then names the decision.
        assert "key store" in body["detail"] or "ext_authz_denied" in body["detail"]
        assert response.headers["retry-after"] == "1"
        # Unknown keys cannot be told apart from good ones without the store: also 503, not 401.
        response = http.post(EMBED, json={"input_text": "c"}, headers=bearer("sk_test_" + "q" * 43))
        assert_error(response, 503, "SERVICE_UNAVAILABLE")
        # A key cached before the outage keeps working (bounded staleness: the cache TTL).
        assert http.post(EMBED, json={"input_text": "d"}, headers=bearer(cached)).status_code == 200
        assert isolated_authz.metric('authz_decisions_total{result="store_unavailable"}') == 2
        assert isolated_authz.metric('authz_decisions_total{result="ok"}') == 2

        isolated_authz.start_postgres()
        deadline = time.monotonic() + 15
        while True:
            status = http.post(EMBED, json={"input_text": "e"}, headers=bearer(uncached)).status_code
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status == 200
