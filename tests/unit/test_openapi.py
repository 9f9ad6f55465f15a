"""The gateway's one public OpenAPI document: current, complete, with the auth schemes Envoy enforces."""

from __future__ import annotations

import json

from stack import openapi

DOCUMENT = json.loads(openapi.OUT.read_text())


def test_the_committed_document_is_what_the_services_describe_now() -> None:
    assert openapi.OUT.read_text() == openapi.render(), "run `python -m stack.openapi`: the document is stale"


def test_every_public_route_and_nothing_else() -> None:
    assert list(DOCUMENT["paths"]) == list(openapi.PUBLIC_PATHS)
    assert "/metrics" not in DOCUMENT["paths"]
    assert {"ErrorBody", "EmbedResponse", "EmbeddingsResponse", "RegisterResponse"} <= DOCUMENT["components"][
        "schemas"
    ].keys()


def test_keyed_routes_name_both_key_headers_and_probes_none() -> None:
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer" and schemes["apiKey"]["name"] == "X-API-Key"
    for path, item in DOCUMENT["paths"].items():
        for operation in item.values():
            security = operation.get("security")
            if path in openapi.KEYED:
                assert security == [{"bearer": []}, {"apiKey": []}], path
            elif path in ("/auth/register", "/admin/usage"):
                assert {"adminToken": []} in security
            else:
                assert security is None, path
