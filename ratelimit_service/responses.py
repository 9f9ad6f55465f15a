"""Build RateLimitResponses (xds-protos): X-RateLimit-* headers, Retry-After and the 429 body."""

from __future__ import annotations

from envoy.config.core.v3.base_pb2 import HeaderValue
from envoy.service.ratelimit.v3.rls_pb2 import RateLimitResponse

from common import errors
from ratelimit_service.windows import Decision, WindowState

OK = RateLimitResponse(overall_code=RateLimitResponse.OK)
_UNIT_PROTO = {
    "second": RateLimitResponse.RateLimit.SECOND,
    "minute": RateLimitResponse.RateLimit.MINUTE,
    "hour": RateLimitResponse.RateLimit.HOUR,
    "day": RateLimitResponse.RateLimit.DAY,
}


def _header(name: str, value: object) -> HeaderValue:
    return HeaderValue(key=name, value=str(value))


def _window_headers(state: WindowState) -> list[HeaderValue]:
    suffix = state.window.unit.capitalize()
    return [
        _header(f"x-ratelimit-limit-{suffix}", state.window.limit),
        _header(f"x-ratelimit-remaining-{suffix}", state.remaining()),
    ]


def rate_limit_headers(decision: Decision) -> list[HeaderValue]:
    """On a denial the summary headers describe the denying window (remaining 0, its reset)."""
    blocking = decision.blocking()
    summary = blocking or decision.tightest()
    reset = decision.retry_after() if blocking else summary.seconds_to_bucket_end()
    headers = [
        _header("x-ratelimit-limit", summary.window.limit),
        _header("x-ratelimit-remaining", 0 if blocking else summary.remaining()),
        _header("x-ratelimit-reset", reset),
    ]
    for state in decision.states:
        headers += _window_headers(state)
    return headers


def _status(state: WindowState, hits: int) -> RateLimitResponse.DescriptorStatus:
    over = not state.admits(hits)
    status = RateLimitResponse.DescriptorStatus(
        code=RateLimitResponse.OVER_LIMIT if over else RateLimitResponse.OK,
        current_limit=RateLimitResponse.RateLimit(
            requests_per_unit=state.window.limit, unit=_UNIT_PROTO[state.window.unit]
        ),
        limit_remaining=state.remaining(),
    )
    status.duration_until_reset.FromSeconds(state.seconds_to_bucket_end())
    return status


def from_decision(decision: Decision) -> RateLimitResponse:
    headers = rate_limit_headers(decision)
    if decision.allowed:
        return RateLimitResponse(overall_code=RateLimitResponse.OK, response_headers_to_add=headers)
    blocking = decision.blocking()
    assert blocking is not None  # a denial always has a denying window
    retry_after = decision.retry_after()
    limit, unit = blocking.window.limit, blocking.window.unit
    body = errors.error_body(
        "Rate limit exceeded",
        f"Rate limit exceeded: {limit} requests per {unit}. Retry after {retry_after} seconds.",
        errors.RATE_LIMIT_EXCEEDED,
        retry_after=retry_after,
        limit=limit,
        limit_type=unit,
    )
    headers += [_header("retry-after", retry_after), _header("content-type", errors.JSON_CONTENT_TYPE)]
    return RateLimitResponse(
        overall_code=RateLimitResponse.OVER_LIMIT,
        statuses=[_status(s, decision.hits) for s in decision.states],
        response_headers_to_add=headers,
        raw_body=body,
    )
