"""The gRPC edge: envoy.service.auth.v3.Authorization/Check.

Per request: read two headers, SHA-256, one cache hit (or one Postgres query), build the
response. Fails closed: when the store is unreachable and the key is not cached → 503.
"""

from __future__ import annotations

import logging
from typing import Protocol

import grpc
from envoy.service.auth.v3 import external_auth_pb2_grpc
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse

from authz_service import keys, responses
from authz_service.cache import KeyCache
from authz_service.store import KeyRecord

log = logging.getLogger(__name__)


class KeyLookup(Protocol):
    async def find_by_hash(self, key_hash: str) -> KeyRecord | None: ...


class AuthorizationService(external_auth_pb2_grpc.AuthorizationServicer):
    def __init__(self, cache: KeyCache[KeyRecord]) -> None:
        self.cache = cache
        self.store: KeyLookup | None = None  # set once Postgres is reachable

    async def Check(self, request: CheckRequest, context: grpc.aio.ServicerContext) -> CheckResponse:
        credential = keys.extract_key(request.attributes.request.http.headers)
        if credential.key is None:
            missing = credential.problem is keys.KeyProblem.MISSING
            return responses.MISSING_KEY if missing else responses.MALFORMED_KEY
        record = await self._lookup(keys.hash_key(credential.key))
        if record is KeyCache.MISS:
            return responses.STORE_UNAVAILABLE
        if record is None:
            return responses.UNKNOWN_KEY
        if record.is_revoked():
            return responses.REVOKED_KEY
        if record.is_expired():
            return responses.EXPIRED_KEY
        return responses.allowed(record)

    async def _lookup(self, key_hash: str) -> KeyRecord | object | None:
        """The record, None for an unknown key, or KeyCache.MISS when the store cannot answer."""
        cached = self.cache.lookup(key_hash)
        if cached is not KeyCache.MISS or self.store is None:
            return cached
        try:
            record = await self.store.find_by_hash(key_hash)
        except Exception as exc:
            log.warning("key store lookup failed: %s", exc)
            return KeyCache.MISS
        self.cache.remember(key_hash, record)
        return record
