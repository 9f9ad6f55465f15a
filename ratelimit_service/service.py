"""The gRPC edge: envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit.

Envoy sends descriptors such as [(api_key, key_123)]; each request is decided against the
per-key windows (60/minute and 1000/hour by default) in one store round trip.
"""

from __future__ import annotations

import logging
from typing import Protocol

import grpc
from envoy.service.ratelimit.v3 import rls_pb2_grpc
from envoy.service.ratelimit.v3.rls_pb2 import RateLimitRequest, RateLimitResponse

from ratelimit_service import responses
from ratelimit_service.windows import Decision, Window

log = logging.getLogger(__name__)

SUBJECT_KEY = "api_key"


class WindowStore(Protocol):
    async def hit(self, subject: str, windows: tuple[Window, ...], hits: int = 1) -> Decision: ...


def subject_of(request: RateLimitRequest) -> str | None:
    """The value of the first `api_key` descriptor entry, if Envoy sent one."""
    for descriptor in request.descriptors:
        for entry in descriptor.entries:
            if entry.key == SUBJECT_KEY and entry.value:
                return entry.value
    return None


class RateLimitService(rls_pb2_grpc.RateLimitServiceServicer):
    def __init__(self, store: WindowStore, windows: tuple[Window, ...]) -> None:
        self.store = store
        self.windows = windows

    async def ShouldRateLimit(
        self, request: RateLimitRequest, context: grpc.aio.ServicerContext
    ) -> RateLimitResponse:
        subject = subject_of(request)
        if subject is None:
            return responses.OK
        hits = request.hits_addend or 1
        try:
            decision = await self.store.hit(subject, self.windows, hits)
        except Exception as exc:
            log.warning("rate-limit store failed: %s", exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "rate-limit store unavailable")
        return responses.from_decision(decision)
