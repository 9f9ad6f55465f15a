"""orjson responses (numpy arrays serialised natively) and the shared JSON error body."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse, Response

from common.errors import error_dict


def dump_json(content: Any) -> bytes:
    """orjson, numpy arrays included: an fp32 embedding is written straight from the array."""
    return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


class OrjsonResponse(JSONResponse):
    """JSON via orjson (see dump_json)."""

    def render(self, content: Any) -> bytes:
        return dump_json(content)


# The tokens a successful inference response used (its usage.prompt_tokens), for Envoy: the rate-limit
# filter charges them to the key's token limit when the response is done, and the usage records
# read them from the access log (docs/ratelimit.md#token-limits). Integer, always present.
TOKENS_HEADER = "x-gateway-tokens"
Reply = tuple[bytes, int]  # a hot route's JSON body and its token count


def reply_response(reply: Reply) -> Response:
    """The framework routes' answer: the same body and headers as the fast path's."""
    body, tokens = reply
    return Response(body, media_type="application/json", headers={TOKENS_HEADER: str(tokens)})


def error_response(
    status: int, error: str, detail: str, code: str, headers: dict[str, str] | None = None
) -> OrjsonResponse:
    return OrjsonResponse(error_dict(error, detail, code), status_code=status, headers=headers)
