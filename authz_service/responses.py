"""Build ext_authz CheckResponses (xds-protos messages). Denials are built once and reused."""

from __future__ import annotations

import functools
from typing import Any

from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse, DeniedHttpResponse, OkHttpResponse
from envoy.type.v3.http_status_pb2 import HttpStatus
from google.protobuf.struct_pb2 import Struct
from google.rpc import code_pb2, status_pb2

from authz_service.model import KeyRecord
from authz_service.plans import Limits
from common import errors
from ratelimit_service.embedded import TOKEN_LIMITS_KEY, format_token_limits

OVERWRITE = HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
# Credentials stop at the gateway: the upstream only learns who called via x-gateway-*.
CREDENTIAL_HEADERS = ("authorization", "x-api-key")
JSON_HEADER = HeaderValueOption(
    header=HeaderValue(key="content-type", value=errors.JSON_CONTENT_TYPE), append_action=OVERWRITE
)


def denied(
    http_status: int, error: str, detail: str, code: str, retry_after: int | None = None, **extra: Any
) -> CheckResponse:
    headers = [JSON_HEADER]
    if retry_after is not None:
        headers.append(HeaderValueOption(header=HeaderValue(key="retry-after", value=str(retry_after))))
    if http_status == 401:
        headers.append(
            HeaderValueOption(header=HeaderValue(key="www-authenticate", value='Bearer realm="api"'))
        )
    grpc_code = {401: code_pb2.UNAUTHENTICATED, 403: code_pb2.PERMISSION_DENIED}.get(
        http_status, code_pb2.UNAVAILABLE
    )
    return CheckResponse(
        status=status_pb2.Status(code=grpc_code),
        denied_response=DeniedHttpResponse(
            status=HttpStatus(code=http_status),
            headers=headers,
            body=errors.error_body(error, detail, code, **extra).decode(),
        ),
    )


def _unauthenticated(detail: str) -> CheckResponse:
    return denied(401, "Authentication failed", detail, errors.AUTHENTICATION_ERROR)


MISSING_KEY = _unauthenticated("Missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.")
MALFORMED_KEY = _unauthenticated(
    "Malformed API key: expected 'Bearer sk_live_…', 'sk_test_…' or 'sk_dev_…' followed by 32+ characters."
)
UNKNOWN_KEY = _unauthenticated("Unknown API key.")
REVOKED_KEY = _unauthenticated("This API key has been revoked.")
EXPIRED_KEY = _unauthenticated("This API key has expired.")
_SIGNATURE_DETAILS = {
    "missing": "This API key requires signed requests: send X-Signature-Timestamp and X-Signature.",
    "expired": "The signature's timestamp (X-Signature-Timestamp, unix seconds) is more than 300 s "
    "from the gateway's clock.",
    "mismatch": "The signature (X-Signature) does not match this request's method, path, body and "
    "timestamp under the key's signing secret.",
    "replayed": "This signature was already used; sign each request anew.",
}


# One prebuilt 401 per failed signature check (authz_service.signing.SignatureProblem values);
# `reason` names the check for programs, `detail` explains it to people.
SIGNATURE_FAILURES = {
    reason: denied(
        401, "Authentication failed", detail, errors.AUTHENTICATION_ERROR, reason=f"signature_{reason}"
    )
    for reason, detail in _SIGNATURE_DETAILS.items()
}
SIGNING_UNAVAILABLE = denied(
    503,
    "Service unavailable",
    "Signed requests cannot be verified right now; try again shortly.",
    errors.SERVICE_UNAVAILABLE,
    retry_after=1,
)
STORE_UNAVAILABLE = denied(
    503,
    "Service unavailable",
    "The key store is unreachable; try again shortly.",
    errors.SERVICE_UNAVAILABLE,
    retry_after=1,
)


FORBIDDEN_ROUTE = denied(
    403,
    "Permission denied",
    "This API key's scopes do not include this route.",
    errors.PERMISSION_DENIED,
)


@functools.lru_cache(maxsize=64)
def forbidden(group: str | None, scopes: tuple[str, ...]) -> CheckResponse:
    """403 for a route group outside the key's scopes (built once per combination)."""
    if group is None:
        return FORBIDDEN_ROUTE
    detail = f"This API key may not call '{group}' routes; its scopes are: {', '.join(scopes)}."
    return denied(403, "Permission denied", detail, errors.PERMISSION_DENIED)


def address_not_allowed(address: str) -> CheckResponse:
    """403 for a key used from a client address outside its allowlist."""
    detail = f"This API key may not be used from {address or 'an unknown address'}."
    return denied(403, "Permission denied", detail, errors.PERMISSION_DENIED)


def with_key_id(denial: CheckResponse, key_id: str) -> CheckResponse:
    """A refusal of a known, usable key (scope, address, signature, rate limit) carries its id in
    the dynamic metadata as a grant does, so Envoy's usage log counts it as that key's client
    error (docs/usage.md). Revoked, expired and unknown keys are nobody's usage."""
    response = CheckResponse()
    response.CopyFrom(denial)
    response.dynamic_metadata.fields["key_id"].string_value = key_id
    return response


def _set_header(name: str, value: str) -> HeaderValueOption:
    return HeaderValueOption(header=HeaderValue(key=name, value=value), append_action=OVERWRITE)


def allowed(record: KeyRecord, limits: Limits) -> CheckResponse:
    """OK: identify the caller upstream (overwriting spoofed copies) and drop the credentials.

    The dynamic metadata (namespace envoy.filters.http.ext_authz) always carries the key's
    effective limits (`rate_limit_*`, for display). `key_rate_limit_*` are present only when
    the key has limits of its own: Envoy's rate-limit descriptors pass those on as overrides,
    and plan defaults stay with the ratelimit service's config.
    """
    metadata = Struct()
    metadata.update(
        {
            "key_id": record.id,
            "plan": record.plan,
            "owner": record.owner,
            "rate_limit_minute": limits.per_minute,
            "rate_limit_hour": limits.per_hour,
        }
    )
    if record.rate_limit_minute is not None:
        metadata["key_rate_limit_minute"] = record.rate_limit_minute
    if record.rate_limit_hour is not None:
        metadata["key_rate_limit_hour"] = record.rate_limit_hour
    # Effective token limits (the key's or its plan's), only when there are some: Envoy's token
    # descriptors need this entry, so a key without token limits sends none (no extra call).
    token_limits = format_token_limits({"minute": limits.tokens_per_minute, "day": limits.tokens_per_day})
    if token_limits is not None:
        metadata[TOKEN_LIMITS_KEY] = token_limits
    return CheckResponse(
        status=status_pb2.Status(code=code_pb2.OK),
        ok_response=OkHttpResponse(
            headers=[
                _set_header("x-gateway-key-id", record.id),
                _set_header("x-gateway-owner", record.owner),
                _set_header("x-gateway-plan", record.plan),
            ],
            headers_to_remove=CREDENTIAL_HEADERS,
        ),
        dynamic_metadata=metadata,
    )
