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


def json_bytes_response(body: bytes, status: int = 200) -> Response:
    """A response for a body that is already JSON bytes."""
    return Response(body, status_code=status, media_type="application/json")


def error_response(
    status: int, error: str, detail: str, code: str, headers: dict[str, str] | None = None
) -> OrjsonResponse:
    return OrjsonResponse(error_dict(error, detail, code), status_code=status, headers=headers)
