"""Build RateLimitResponses (xds-protos): X-RateLimit-* headers, Retry-After and the 429 body."""

from __future__ import annotations

from envoy.config.core.v3.base_pb2 import HeaderValue
from envoy.service.ratelimit.v3.rls_pb2 import RateLimitResponse
from google.protobuf.struct_pb2 import Struct

from common import errors
from ratelimit_service.limiter import OK as VERDICT_OK
from ratelimit_service.limiter import UNAVAILABLE, Verdict
from ratelimit_service.windows import Decision, WindowOutcome

OK = RateLimitResponse(overall_code=RateLimitResponse.OK)
UNIT_PROTO = {
    "second": RateLimitResponse.RateLimit.SECOND,
    "minute": RateLimitResponse.RateLimit.MINUTE,
    "hour": RateLimitResponse.RateLimit.HOUR,
    "day": RateLimitResponse.RateLimit.DAY,
    "week": RateLimitResponse.RateLimit.WEEK,
    "month": RateLimitResponse.RateLimit.MONTH,
    "year": RateLimitResponse.RateLimit.YEAR,
}
PROTO_UNIT = {v: k for k, v in UNIT_PROTO.items()}
JSON_HEADER = HeaderValue(key="content-type", value=errors.JSON_CONTENT_TYPE)
# Envoy answers OVER_LIMIT with 429; this marker in the filter's dynamic metadata lets a
# local_reply_config mapper (metadata_filter on envoy.filters.http.ratelimit: store) turn
# the store-down denial into a 503.
STORE_UNAVAILABLE_METADATA = Struct()
STORE_UNAVAILABLE_METADATA.update({"store": "unavailable"})
STORE_UNAVAILABLE = RateLimitResponse(
    overall_code=RateLimitResponse.OVER_LIMIT,
    response_headers_to_add=[
        HeaderValue(key="retry-after", value="1"),
        HeaderValue(key="x-ratelimit-store", value="unavailable"),
        JSON_HEADER,
    ],
    raw_body=errors.error_body(
        "Service unavailable",
        "The rate-limit store is unreachable and this gateway is configured to refuse requests "
        "then; try again shortly.",
        errors.SERVICE_UNAVAILABLE,
    ),
    dynamic_metadata=STORE_UNAVAILABLE_METADATA,
)
_HEADER_NAMES: dict[str, tuple[str, str]] = {
    unit: (f"x-ratelimit-limit-{unit}", f"x-ratelimit-remaining-{unit}") for unit in UNIT_PROTO
}


def _header(name: str, value: object) -> HeaderValue:
    return HeaderValue(key=name, value=str(value))


TOKEN_HEADERS = ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")
SUMMARY_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


def _summary(
    decision: Decision, states: list[WindowOutcome], names: tuple[str, str, str]
) -> list[tuple[str, str]]:
    """Limit, remaining and reset of `states`: the denying window (remaining 0, its reset) when one
    of them denies, else the one with the fewest left."""
    if not states:
        return []
    blocking = decision.blocking()
    if blocking is not None and any(s is blocking for s in states):
        summary, remaining, reset = blocking, 0, decision.retry_after()
    else:
        summary = min(states, key=lambda s: (s.remaining(), s.window.seconds))
        remaining, reset = summary.remaining(), summary.reset_seconds()
    return list(zip(names, (str(summary.window.limit), str(remaining), str(reset)), strict=True))


def limit_header_values(decision: Decision) -> list[tuple[str, str]]:
    """X-RateLimit-* names and values for the request windows, and X-RateLimit-*-Tokens (OpenAI's
    names) for the token windows. On a denial the headers of the denying kind describe the denying
    window (remaining 0, its reset); otherwise the window with the fewest left."""
    if any(s.window.tokens for s in decision.states):
        requests = [s for s in decision.states if not s.window.tokens]
        token_states = [s for s in decision.states if s.window.tokens]
    else:  # the common case: no token limit
        requests, token_states = list(decision.states), []
    values = _summary(decision, requests, SUMMARY_HEADERS) + _summary(decision, token_states, TOKEN_HEADERS)
    # Per unit (X-RateLimit-Limit-Minute, …): the tightest window of that unit.
    per_unit: dict[str, tuple[int, WindowOutcome]] = {}
    for state in requests:
        left = state.remaining()
        seen = per_unit.get(state.window.unit)
        if seen is None or left < seen[0]:
            per_unit[state.window.unit] = (left, state)
    for unit, (left, state) in per_unit.items():
        limit_name, remaining_name = _HEADER_NAMES[unit]
        values.append((limit_name, str(state.window.limit)))
        values.append((remaining_name, str(left)))
    return values


def rate_limit_headers(decision: Decision) -> list[HeaderValue]:
    return [HeaderValue(key=name, value=value) for name, value in limit_header_values(decision)]


def _status(states: list[WindowOutcome], hits: int) -> RateLimitResponse.DescriptorStatus:
    if not states:
        return RateLimitResponse.DescriptorStatus(code=RateLimitResponse.OK)
    denied = [s for s in states if not s.admits(hits)]
    shown = denied[0] if denied else min(states, key=lambda s: s.remaining())
    status = RateLimitResponse.DescriptorStatus(
        code=RateLimitResponse.OVER_LIMIT if denied else RateLimitResponse.OK,
        current_limit=RateLimitResponse.RateLimit(
            requests_per_unit=shown.window.limit, unit=UNIT_PROTO[shown.window.unit]
        ),
        limit_remaining=shown.remaining(),
    )
    status.duration_until_reset.FromSeconds(shown.reset_seconds())
    return status


def from_verdict(verdict: Verdict, descriptor_count: int) -> RateLimitResponse:
    decision = verdict.decision
    if verdict.code == UNAVAILABLE:
        return STORE_UNAVAILABLE
    if decision is None:
        return OK
    if verdict.code == VERDICT_OK:
        response = RateLimitResponse(overall_code=RateLimitResponse.OK)
        add = response.response_headers_to_add.add  # in place: no HeaderValue built and copied
        for name, value in limit_header_values(decision):
            add(key=name, value=value)
        return response
    headers = rate_limit_headers(decision)
    blocking = decision.blocking()
    assert blocking is not None  # a denial always has a denying window
    retry_after = verdict.retry_after
    limit, unit = blocking.window.limit, blocking.window.unit
    counted, limit_type = ("tokens", f"tokens_per_{unit}") if blocking.window.tokens else ("requests", unit)
    body = errors.error_body(
        "Rate limit exceeded",
        f"Rate limit exceeded: {limit} {counted} per {unit}. Retry after {retry_after} seconds.",
        errors.RATE_LIMIT_EXCEEDED,
        retry_after=retry_after,
        limit=limit,
        limit_type=limit_type,
    )
    headers += [_header("retry-after", retry_after), JSON_HEADER]
    by_descriptor: list[list[WindowOutcome]] = [[] for _ in range(descriptor_count)]
    for state, owner in zip(decision.states, verdict.owners, strict=True):
        by_descriptor[owner].append(state)
    return RateLimitResponse(
        overall_code=RateLimitResponse.OVER_LIMIT,
        statuses=[_status(states, decision.hits) for states in by_descriptor],
        response_headers_to_add=headers,
        raw_body=body,
    )
