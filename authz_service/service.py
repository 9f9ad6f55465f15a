"""The gRPC edge: envoy.service.auth.v3.Authorization/Check.

Per request: read two headers, SHA-256, one cache hit (or one Postgres query), build the
response. Fails closed: when the store is unreachable and the key is not cached → 503.
No logging per request; failures of the store are logged once per streak.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

import grpc
from envoy.service.auth.v3 import external_auth_pb2_grpc
from envoy.service.auth.v3.attribute_context_pb2 import AttributeContext
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse

from authz_service import keys, metrics, responses, signing
from authz_service.cache import KeyCache
from authz_service.grants import UNREADABLE, Grant, grant_for
from authz_service.last_used import LastUsedRecorder
from authz_service.model import KeyRecord
from authz_service.plans import Plans
from authz_service.replay import MemoryReplayGuard, ReplayGuard
from authz_service.sealing import SecretBox

log = logging.getLogger(__name__)

MISS = KeyCache.MISS
HttpRequest = AttributeContext.HttpRequest


class KeyLookup(Protocol):
    async def find_by_hash(self, key_hash: str, timeout: float | None = None) -> KeyRecord | None: ...


class GrantedLimits(Protocol):
    """Fused mode (authz_service.fused): the rate limits of a granted request, in the same call."""

    async def check(self, request: CheckRequest, grant: Grant) -> CheckResponse: ...


class AuthorizationService(external_auth_pb2_grpc.AuthorizationServicer):
    def __init__(
        self,
        cache: KeyCache[Grant],
        plans: Plans,
        last_used: LastUsedRecorder | None = None,
        lookup_timeout: float = 0.2,
        box: SecretBox | None = None,
        replay: ReplayGuard | None = None,
    ) -> None:
        self.cache = cache
        self.box = box  # opens signing keys' secrets (None: no master key; those keys get 503)
        self.replay = replay or MemoryReplayGuard()
        self.plans = plans
        self.last_used = last_used or LastUsedRecorder(interval_seconds=10.0)
        self.lookup_timeout = lookup_timeout  # below Envoy's ext_authz timeout: we answer 503 first
        self.store: KeyLookup | None = None  # set once Postgres is reachable
        self.limits: GrantedLimits | None = None  # fused mode only
        self._loading: dict[str, asyncio.Task[Grant | object | None]] = {}
        self._store_failing = False
        self._replay_failing = False

    async def Check(self, request: CheckRequest, context: grpc.aio.ServicerContext) -> CheckResponse:
        http = request.attributes.request.http
        credential = keys.extract_key(http.headers)
        if credential.key is None:
            if credential.problem is keys.KeyProblem.MISSING:
                metrics.MISSING.inc()
                return responses.MISSING_KEY
            metrics.MALFORMED.inc()
            return responses.MALFORMED_KEY
        key_hash = keys.hash_key(credential.key)
        grant = self.cache.lookup(key_hash)
        if grant is MISS:
            grant = await self._load(key_hash)
            if grant is MISS:
                metrics.UNAVAILABLE.inc()
                return responses.STORE_UNAVAILABLE
        if grant is None:
            metrics.UNKNOWN.inc()
            return responses.UNKNOWN_KEY
        assert isinstance(grant, Grant)
        client = request.attributes.source.address.socket_address.address if grant.networks else ""
        now = time.time()
        response = grant.decide(http.path, now, client)
        if response is grant.ok and grant.signing_secret is not None:
            response = await self._verify_signature(grant, http, now)
        if response is grant.ok:
            self.last_used.touch(grant.key_id)
            metrics.OK.inc()
            if self.limits is not None:
                return await self.limits.check(request, grant)
            return response
        metrics.DENIED.inc()
        if response is responses.REVOKED_KEY or response is responses.EXPIRED_KEY:
            return response
        return responses.with_key_id(response, grant.key_id)

    async def _verify_signature(self, grant: Grant, http: HttpRequest, now: float) -> CheckResponse:
        """grant.ok for a request correctly signed with the key's secret, seen for the first time."""
        if grant.signing_secret == UNREADABLE:
            metrics.SIGNATURES.labels("unavailable").inc()
            return responses.SIGNING_UNAVAILABLE
        assert grant.signing_secret is not None
        body = http.raw_body or http.body.encode()  # raw_body: Envoy's pack_as_bytes (the signed route)
        problem = signing.check(grant.signing_secret, http.headers, http.method, http.path, body, now)
        if problem is None:
            try:
                first = await self.replay.first_use(signing.replay_token(grant.key_id, http.headers))
            except Exception as exc:  # Redis unreachable: signed requests fail closed
                metrics.SIGNATURES.labels("unavailable").inc()
                if not self._replay_failing:
                    log.warning("replay cache unreachable (answering 503 to signed requests): %r", exc)
                self._replay_failing = True
                return responses.SIGNING_UNAVAILABLE
            if self._replay_failing:
                log.warning("replay cache works again")
                self._replay_failing = False
            if first:
                metrics.SIGNATURES.labels("ok").inc()
                return grant.ok
            problem = signing.SignatureProblem.REPLAYED
        metrics.SIGNATURES.labels(problem.value).inc()
        return responses.SIGNATURE_FAILURES[problem.value]

    async def _load(self, key_hash: str) -> Grant | object | None:
        """One store query per hash at a time: concurrent misses for one key share it."""
        task = self._loading.get(key_hash)
        if task is None:
            task = asyncio.ensure_future(self._fetch(key_hash))
            self._loading[key_hash] = task
            task.add_done_callback(lambda _: self._loading.pop(key_hash, None))
        # shield: a caller cancelled by Envoy's timeout must not cancel the others' lookup.
        return await asyncio.shield(task)

    async def _fetch(self, key_hash: str) -> Grant | object | None:
        """The grant, None for an unknown key, or MISS when the store cannot answer."""
        if self.store is None:
            return MISS
        generation = self.cache.generation
        metrics.STORE_LOOKUPS.inc()
        try:
            record = await self.store.find_by_hash(key_hash, timeout=self.lookup_timeout)
        except Exception as exc:
            metrics.STORE_ERRORS.inc()
            if not self._store_failing:
                log.warning("key store lookup failed (answering 503 for uncached keys): %r", exc)
            self._store_failing = True
            return MISS
        if self._store_failing:
            log.warning("key store lookups work again")
            self._store_failing = False
        grant = None if record is None else grant_for(record, self.plans, self.box)
        self.cache.remember(key_hash, grant, generation)
        return grant
