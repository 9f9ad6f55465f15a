"""The official `openai` Python client, unchanged, against the gateway: real Envoy, authz, limits, adapter.

The session rate limit is 3 requests/minute per key, so each test uses its own key and few requests,
and the client's automatic retries are off (a retry would spend quota and hide the first answer).
"""

from __future__ import annotations

import numpy as np
import openai
import pytest

from tests.conftest import Gateway

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def client_for(gateway: Gateway, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=api_key, max_retries=0, timeout=30)


def test_embeddings_create_with_a_list_and_both_encodings(gateway: Gateway) -> None:
    client = client_for(gateway, gateway.new_key())
    texts = ["first text", "a second, longer piece of text", "third"]
    default = client.embeddings.create(model=MODEL, input=texts)  # the client asks for base64 and decodes it
    floats = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert default.object == "list" and default.model == MODEL
    assert [item.index for item in default.data] == [0, 1, 2]
    decoded = np.array([item.embedding for item in default.data], dtype=np.float32)
    assert decoded.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(decoded, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(decoded, np.array([item.embedding for item in floats.data], dtype=np.float32))
    assert default.usage.prompt_tokens == default.usage.total_tokens > 3
    single = client.embeddings.create(model=MODEL, input="third")
    np.testing.assert_allclose(single.data[0].embedding, decoded[2], atol=1e-5)  # order kept


def test_errors_surface_as_the_clients_exceptions(gateway: Gateway) -> None:
    client = client_for(gateway, gateway.new_key())
    with pytest.raises(openai.UnprocessableEntityError) as unsupported:
        client.embeddings.create(model=MODEL, input="hi", dimensions=128)
    assert unsupported.value.status_code == 422
    # Our body is the gateway's {"error": str, "detail", "code"}; the client keeps the whole response.
    body = unsupported.value.response.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert "only produces 384-dimensional" in body["detail"]

    with pytest.raises(openai.AuthenticationError) as unauthenticated:
        client_for(gateway, "sk_test_" + "x" * 43).embeddings.create(model=MODEL, input="hi")
    assert unauthenticated.value.status_code == 401
    assert unauthenticated.value.response.json()["code"] == "AUTHENTICATION_ERROR"
