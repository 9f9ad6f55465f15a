"""The gRPC edge: envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit.

Envoy sends descriptors such as [(route, v1), (plan, free), (api_key, key_123)]; the
limiter decides every window of every descriptor in one store round trip.
"""

from __future__ import annotations

import grpc
from envoy.service.ratelimit.v3 import rls_pb2_grpc
from envoy.service.ratelimit.v3.rls_pb2 import RateLimitRequest, RateLimitResponse

from ratelimit_service import responses
from ratelimit_service.limiter import Limiter, RequestDescriptor


def request_descriptors(request: RateLimitRequest) -> list[RequestDescriptor]:
    found = []
    for descriptor in request.descriptors:
        entries = tuple((entry.key, entry.value) for entry in descriptor.entries)
        overrides: dict[str, int] = {}
        # Envoy's `limit: {dynamic_metadata: …}` override: beats the config for its unit.
        if descriptor.HasField("limit") and descriptor.limit.requests_per_unit > 0:
            unit = responses.PROTO_UNIT.get(descriptor.limit.unit)
            if unit is not None:
                overrides[unit] = descriptor.limit.requests_per_unit
        found.append(RequestDescriptor(entries, overrides))
    return found


class RateLimitService(rls_pb2_grpc.RateLimitServiceServicer):
    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter

    async def ShouldRateLimit(
        self, request: RateLimitRequest, context: grpc.aio.ServicerContext
    ) -> RateLimitResponse:
        descriptors = request_descriptors(request)
        verdict = await self.limiter.decide(request.domain, descriptors, request.hits_addend or 1)
        return responses.from_verdict(verdict, len(descriptors))
