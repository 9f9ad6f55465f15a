"""orjson responses (numpy arrays serialised natively) and the shared JSON error body."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse

from common.errors import error_dict


class OrjsonResponse(JSONResponse):
    """JSON via orjson: an fp32 numpy embedding is written straight from the array, no list()."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def error_response(
    status: int, error: str, detail: str, code: str, headers: dict[str, str] | None = None
) -> OrjsonResponse:
    return OrjsonResponse(error_dict(error, detail, code), status_code=status, headers=headers)
