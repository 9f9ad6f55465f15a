"""The gRPC edge: envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit.

Envoy sends descriptors such as [(route, v1), (plan, free), (api_key, key_123)]; the
limiter decides every window of every descriptor in one store round trip.

Envoy sends the very same bytes for every request of a key, so the servicer takes the request
undecoded and remembers what each distinct request says: protobuf parsing and building the
descriptors happen once per key, not once per request.
"""

from __future__ import annotations

import grpc
from envoy.service.ratelimit.v3 import rls_pb2_grpc
from envoy.service.ratelimit.v3.rls_pb2 import RateLimitRequest, RateLimitResponse

from ratelimit_service import responses
from ratelimit_service.limiter import Limiter
from ratelimit_service.plan import RequestDescriptor
from ratelimit_service.windows import Window

SERVICE = "envoy.service.ratelimit.v3.RateLimitService"
MAX_REMEMBERED_REQUESTS = 10_000  # a few hundred bytes each; all forgotten at once when full
Parsed = tuple[str, list[RequestDescriptor], int]  # domain, descriptors, hits


def request_descriptors(request: RateLimitRequest) -> list[RequestDescriptor]:
    found = []
    for descriptor in request.descriptors:
        entries = tuple((entry.key, entry.value) for entry in descriptor.entries)
        limit = None
        # Envoy's `limit: {dynamic_metadata: …}` override replaces the descriptor's whole limit,
        # as in envoyproxy/ratelimit (which also ignores it when its unit is UNKNOWN).
        if descriptor.HasField("limit"):
            unit = responses.PROTO_UNIT.get(descriptor.limit.unit)
            if unit is not None:
                limit = Window(unit, descriptor.limit.requests_per_unit)
        # Per-descriptor hits_addend (Envoy sends it for RateLimitPerRoute policies; 0 explicitly).
        hits = descriptor.hits_addend.value if descriptor.HasField("hits_addend") else None
        found.append(RequestDescriptor(entries, limit=limit, hits=hits))
    return found


def parse(request: RateLimitRequest) -> Parsed:
    return request.domain, request_descriptors(request), request.hits_addend or 1


class RateLimitService(rls_pb2_grpc.RateLimitServiceServicer):
    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter
        self._requests: dict[bytes, Parsed] = {}

    async def ShouldRateLimit(
        self, request: RateLimitRequest, context: grpc.aio.ServicerContext | None
    ) -> RateLimitResponse:
        return await self.decide(parse(request))

    async def decide(self, parsed: Parsed) -> RateLimitResponse:
        domain, descriptors, hits = parsed
        verdict = await self.limiter.decide(domain, descriptors, hits)
        return responses.from_verdict(verdict, len(descriptors))

    async def should_rate_limit_raw(self, raw: bytes, context: grpc.aio.ServicerContext | None) -> bytes:
        """ShouldRateLimit on the wire bytes (what the server registers; see add_to_server)."""
        parsed = self._requests.get(raw)
        if parsed is None:
            parsed = parse(RateLimitRequest.FromString(raw))
            if len(self._requests) >= MAX_REMEMBERED_REQUESTS:
                self._requests = {}
            self._requests[raw] = parsed
        return (await self.decide(parsed)).SerializeToString()


def add_to_server(service: RateLimitService, server: grpc.aio.Server) -> None:
    """Register ShouldRateLimit taking and returning bytes (no (de)serializers: we do both)."""
    method = grpc.unary_unary_rpc_method_handler(service.should_rate_limit_raw)
    handler = grpc.method_handlers_generic_handler(SERVICE, {"ShouldRateLimit": method})
    server.add_generic_rpc_handlers((handler,))
