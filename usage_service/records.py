"""One line of Envoy's usage access log → a Record (pure: no I/O).

Envoy writes the line (envoy/render.py, usage_log): JSON with time (START_TIME), key_id (from
ext_authz's dynamic metadata), path, status, tokens (the adapter's x-gateway-tokens response
header) and flags (RESPONSE_FLAGS, where RL means Envoy's ratelimit filter refused the request).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote

# Route groups a record is counted under: the first segment after /v1/ when it is one of these,
# "auth" for the key API, else "other" (a client probing odd paths must not create new rows).
V1_GROUPS = frozenset({"embed", "embeddings", "detect", "usage"})
MAX_KEY_ID = 128
MAX_TOKENS = 10**12  # beyond any real request: a garbage header must not poison a bill
MAX_TOKEN_LIMITS = 200  # "minute=…,day=…": anything longer is not what ext_authz writes


class BadLine(ValueError):
    """A line that is not a usage record (skipped and counted, never retried)."""


@dataclass(frozen=True)
class Record:
    hour: datetime  # UTC, minute/second zero
    key_id: str
    route: str
    status: int
    tokens: int
    flags: str
    token_limits: str = ""  # the key's token limits when it has any (ext_authz metadata, e.g. minute=1000)

    @property
    def rate_limited(self) -> bool:
        return self.status == 429 or "RL" in self.flags.split(",")

    @property
    def client_error(self) -> bool:
        return 400 <= self.status < 500 and not self.rate_limited

    @property
    def server_error(self) -> bool:
        return 500 <= self.status < 600


def route_group(path: str) -> str:
    path = path.split("?", 1)[0]
    if "%" in path:  # the upstream decodes %XX: /v1/%65mbed is /v1/embed
        path = unquote(path)
    if path.startswith("/v1/"):
        segment = path[4:].split("/", 1)[0]
        return segment if segment in V1_GROUPS else "other"
    if path.startswith("/auth/"):
        return "auth"
    return "other"


def hour_of(raw: object) -> datetime:
    if not isinstance(raw, str):
        raise BadLine(f"time: expected a string, got {raw!r}")
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise BadLine(f"time: not ISO 8601: {raw!r}") from None
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.replace(minute=0, second=0, microsecond=0)


def whole_number(raw: object) -> int | None:
    """An int from Envoy's typed JSON (number) or a header value (string); None when absent/garbage."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw.strip())
    return None


def parse_line(line: bytes) -> Record:
    """A Record, or BadLine for anything else (malformed JSON, no key id, no status)."""
    try:
        fields = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise BadLine("not JSON") from None
    if not isinstance(fields, dict):
        raise BadLine("not a JSON object")
    key_id = fields.get("key_id")
    if not isinstance(key_id, str) or not key_id or key_id == "-" or len(key_id) > MAX_KEY_ID:
        raise BadLine(f"key_id: missing or invalid: {key_id!r}")
    status = whole_number(fields.get("status"))
    if status is None or not 0 <= status <= 999:
        raise BadLine(f"status: not a status code: {fields.get('status')!r}")
    tokens = whole_number(fields.get("tokens"))
    tokens = tokens if tokens is not None and 0 <= tokens <= MAX_TOKENS else 0
    path = fields.get("path")
    flags = fields.get("flags")
    limits = fields.get("token_limits")
    return Record(
        hour=hour_of(fields.get("time")),
        key_id=key_id,
        route=route_group(path if isinstance(path, str) else ""),
        status=status,
        tokens=tokens,
        flags=flags if isinstance(flags, str) else "",
        token_limits=limits if isinstance(limits, str) and len(limits) <= MAX_TOKEN_LIMITS else "",
    )
