"""GET /docs, /redoc and /openapi.json on the gateway's public port: one document, no key needed."""

from __future__ import annotations

import httpx

from stack import openapi


def test_the_gateway_serves_one_public_api_document(client: httpx.Client) -> None:
    document = client.get("/openapi.json")
    assert document.status_code == 200, document.text
    assert list(document.json()["paths"]) == list(openapi.PUBLIC_PATHS)
    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
        assert "/openapi.json" in html.text
    assert client.get("/auth/docs").status_code == 200  # the key API's own document stays
