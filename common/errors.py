"""The one JSON error body used everywhere: Envoy local replies, authz, 429s, adapter.

Shape (seed 000): {"error": str, "detail": str, "code": str, ...extra}.
"""

from __future__ import annotations

import json
from typing import Any

VALIDATION_ERROR = "VALIDATION_ERROR"
VALUE_ERROR = "VALUE_ERROR"
RATE_LIMIT_EXCEEDED = "RATE_LIMIT_EXCEEDED"
INTERNAL_ERROR = "INTERNAL_ERROR"
AUTHENTICATION_ERROR = "AUTHENTICATION_ERROR"
PERMISSION_DENIED = "PERMISSION_DENIED"
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
NOT_FOUND = "NOT_FOUND"
METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"

JSON_CONTENT_TYPE = "application/json"


def error_dict(error: str, detail: str, code: str, **extra: Any) -> dict[str, Any]:
    """The error body as a dict (for frameworks that serialise it themselves)."""
    return {"error": error, "detail": detail, "code": code, **extra}


def error_body(error: str, detail: str, code: str, **extra: Any) -> bytes:
    """The error body as compact JSON bytes (for gRPC responses and raw replies)."""
    return json.dumps(error_dict(error, detail, code, **extra), separators=(",", ":")).encode()
