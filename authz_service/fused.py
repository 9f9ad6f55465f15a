"""Fused mode: the authz service also decides the rate limits, inside the same Check call.

The standard path costs Envoy two sidecar calls per request (ext_authz, then the ratelimit
filter's ShouldRateLimit), and most of each call is gRPC transport. In fused mode Envoy runs
without its ratelimit filter (envoy/render.py, GATEWAY_FUSED_LIMITS=1) and marks every route
that has `rate_limits` in the template with the ext_authz context extension
`rate_limit_route: <its generic_key value>`. After a key is granted on such a route, this
module builds the descriptor Envoy would have sent, decides it with ratelimit_service's
Limiter (same config, same Redis keys, same Lua script, same local over-limit cache) and
answers with what the standard path gives the client: a 429 with the same body and headers,
or OK with the same X-RateLimit-* headers added to the client's response.

Store down: the config's `failure_mode` answers, as in the ratelimit service (allow without
headers, or the same JSON 503). Routes without the extension (/v1/usage, /auth/*) cost nothing.

Token limits: the check is decided here with the rest; the charge comes when the response is
done, from the one ratelimit filter fused mode keeps for it, which calls this service's
RateLimitService (add_rate_limit_service) only for keys with a token limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path

import grpc
from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse, DeniedHttpResponse
from envoy.service.ratelimit.v3.rls_pb2 import RateLimitResponse
from envoy.type.v3.http_status_pb2 import HttpStatus
from google.rpc import code_pb2, status_pb2

from authz_service.grants import Grant
from authz_service.responses import with_key_id
from common.settings import add_option, env_default, truthy
from ratelimit_service.embedded import (
    DEFAULT_DOMAIN,
    OK,
    STORE_UNAVAILABLE,
    TOKEN_LIMITS_KEY,
    UNAVAILABLE,
    ConfigWatcher,
    Limiter,
    RequestDescriptor,
    Verdict,
    build_limiter,
    limit_header_values,
    over_limit_answer,
    serve_rate_limit_service,
    token_entries,
)

# The ext_authz context extension envoy/render.py sets on rate-limited routes (fused mode).
ROUTE_EXTENSION = "rate_limit_route"
# Envoy's ratelimit filter marks its 429s with this header; the fused 429 does the same.
RATELIMITED = HeaderValueOption(header=HeaderValue(key="x-envoy-ratelimited", value="true"))
DEFAULT_REDIS_URL = "redis://127.0.0.1:6390/0"  # the ratelimit service's default store
RELOAD_INTERVAL_S = 2.0  # as the ratelimit service polls its config files
MAX_REMEMBERED = 100_000  # keys whose descriptor is kept between requests (the Limiter keeps plans)


def descriptors(route: str, grant: Grant) -> list[RequestDescriptor]:
    """The template's /v1/ `rate_limits`: [(route, v1), (plan, P), (api_key, ID)] + the key's own limits.

    Envoy passes the own limits (metadata key_rate_limit_*) as rate_limit_<unit> entries, which the
    limiter turns into overrides; here they are overrides straight away (same windows, same keys).
    """
    entries = (("route", route), ("plan", grant.plan or "free"), ("api_key", grant.key_id))
    found = [RequestDescriptor(entries, grant.own_limits)]
    if grant.token_limits is not None:  # the template's token check (hits 0: nothing charged)
        entries_ = (*token_entries(grant.key_id), (TOKEN_LIMITS_KEY, grant.token_limits))
        found.append(RequestDescriptor(entries_, hits=0))
    return found


def add_rate_limit_service(limits: FusedLimits, server: grpc.aio.Server) -> None:
    """Envoy's ratelimit filter sends the token charges here after the response (fused mode keeps
    the filter for them only: envoy/render.py); decided by the same limiter and store."""
    serve_rate_limit_service(limits.limiter, server)


def denied(limited: RateLimitResponse, http_status: int, grpc_code: int) -> CheckResponse:
    """The ratelimit service's over-limit answer as an ext_authz denial: same headers and body."""
    headers = [HeaderValueOption(header=header) for header in limited.response_headers_to_add]
    return CheckResponse(
        status=status_pb2.Status(code=grpc_code),
        denied_response=DeniedHttpResponse(
            status=HttpStatus(code=http_status),
            headers=[*headers, RATELIMITED],
            body=limited.raw_body.decode(),
        ),
        # store: unavailable, for the local_reply mapper that keeps this body on the 503.
        dynamic_metadata=limited.dynamic_metadata,
    )


STORE_DOWN = denied(STORE_UNAVAILABLE, 503, code_pb2.UNAVAILABLE)


def with_headers(ok: CheckResponse, headers: list[tuple[str, str]]) -> CheckResponse:
    """The grant's prebuilt OK plus headers for the client's response (as the ratelimit filter adds)."""
    response = CheckResponse()
    response.CopyFrom(ok)
    add = response.ok_response.response_headers_to_add.add
    for name, value in headers:
        header = add().header  # filled in place: half the cost of building and copying one
        header.key, header.value = name, value
    return response


def check_response(verdict: Verdict, ok: CheckResponse, descriptor_count: int = 1) -> CheckResponse:
    if verdict.code == OK:
        if verdict.decision is None:  # no window applied, or store down with failure_mode allow
            return ok
        return with_headers(ok, limit_header_values(verdict.decision))
    if verdict.code == UNAVAILABLE:
        return STORE_DOWN
    return denied(over_limit_answer(verdict, descriptor_count), 429, code_pb2.RESOURCE_EXHAUSTED)


class FusedLimits:
    """Decides a granted request's limits (AuthorizationService.limits)."""

    def __init__(self, limiter: Limiter, domain: str = DEFAULT_DOMAIN) -> None:
        self.limiter = limiter
        self.domain = domain
        self._tasks: list[asyncio.Task[None]] = []
        self._descriptors: dict[str, tuple[Grant, str, list[RequestDescriptor]]] = {}  # by key id

    async def check(self, request: CheckRequest, grant: Grant) -> CheckResponse:
        route = request.attributes.context_extensions.get(ROUTE_EXTENSION)
        if not route:  # a route the standard path does not limit either
            return grant.ok
        descriptors = self._descriptors_of(route, grant)  # with a key's token check: 2
        verdict = await self.limiter.decide(self.domain, descriptors)
        response = check_response(verdict, grant.ok, len(descriptors))
        return response if verdict.code == OK else with_key_id(response, grant.key_id)

    def _descriptors_of(self, route: str, grant: Grant) -> list[RequestDescriptor]:
        """The same list for every request of one grant (a changed key is a new Grant)."""
        known = self._descriptors.get(grant.key_id)
        if known is not None and known[0] is grant and known[1] == route:
            return known[2]
        made = descriptors(route, grant)
        if len(self._descriptors) >= MAX_REMEMBERED:
            self._descriptors.clear()
        self._descriptors[grant.key_id] = (grant, route, made)
        return made

    def watch(self, watcher: ConfigWatcher, interval: float = RELOAD_INTERVAL_S) -> None:
        """Hot reload, as the ratelimit service does (a bad file keeps the previous config)."""
        self._tasks.append(asyncio.create_task(watcher.run(interval)))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.limiter.store.close()


def add_fused_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fused-limits",
        action="store_true",
        default=env_default("AUTHZ_FUSED_LIMITS", False, truthy),
        help="also decide the rate limits in Check (Envoy rendered with GATEWAY_FUSED_LIMITS=1 makes one "
        "sidecar call instead of two; docs/ratelimit.md) (env AUTHZ_FUSED_LIMITS, default: off)",
    )
    add_option(
        parser, "--ratelimit-config", "RATELIMIT_CONFIG", None,
        "fused mode: the ratelimit service's config (default: its built-in one, with --rate-limit-*)", Path,
    )  # fmt: skip
    add_option(
        parser,
        "--redis-url",
        "REDIS_URL",
        DEFAULT_REDIS_URL,
        "Redis: replay cache of signed requests; in fused mode also the rate-limit counters",
    )
    add_option(
        parser, "--store-timeout", "RATELIMIT_STORE_TIMEOUT", 0.1,
        "fused mode: rate-limit store timeout, seconds (then the config's failure_mode answers)", float,
    )  # fmt: skip


def from_args(args: argparse.Namespace) -> FusedLimits:
    """Built like the ratelimit service builds its limiter (ConfigError, ValueError: bad config or URL)."""
    unit_limits = {"minute": args.rate_limit_minute, "hour": args.rate_limit_hour}
    limiter = build_limiter(args.redis_url, args.store_timeout, args.ratelimit_config, unit_limits)
    return FusedLimits(limiter)
