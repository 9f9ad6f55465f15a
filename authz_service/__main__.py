"""`python -m authz_service`: the ext_authz gRPC service. See --help."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from envoy.service.auth.v3 import external_auth_pb2_grpc

from authz_service import keys
from authz_service.cache import KeyCache
from authz_service.service import AuthorizationService
from authz_service.store import PostgresKeyStore
from common.grpc_serving import GrpcApp
from common.settings import add_option, positive_int

log = logging.getLogger("authz_service")

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5442/postgres"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m authz_service",
        description="API-key authentication for Envoy's ext_authz filter (gRPC). Keys are looked up "
        "by SHA-256 in Postgres; on start a dev key is created (or TEST_API_KEY is registered) and printed.",
    )
    add_option(parser, "--host", "AUTHZ_HOST", "127.0.0.1", "address to bind the gRPC server to")
    add_option(
        parser, "--grpc-port", "AUTHZ_GRPC_PORT", 9001, "gRPC port (Authorization/Check + health)", int
    )
    add_option(
        parser, "--database-url", "DATABASE_URL", DEFAULT_DATABASE_URL, "Postgres DSN for the key store"
    )
    add_option(
        parser,
        "--dev-key",
        "TEST_API_KEY",
        "",
        "register this key as the dev key instead of a new random one",
    )
    add_option(parser, "--cache-ttl", "AUTHZ_CACHE_TTL", 30.0, "seconds a looked-up key stays cached", float)
    add_option(parser, "--cache-size", "AUTHZ_CACHE_SIZE", 10_000, "max cached keys", positive_int)
    add_option(parser, "--log-level", "LOG_LEVEL", "INFO", "logging level")
    parser.add_argument("--no-dev-key", action="store_true", help="do not create or print a dev key")
    return parser.parse_args(argv)


async def ensure_dev_key(store: PostgresKeyStore, key: str) -> str:
    """Register `key` (or a new sk_dev_ key) and return the plaintext to print once."""
    if key and not keys.is_well_formed(key):
        raise SystemExit(
            "TEST_API_KEY is malformed: expected sk_live_/sk_test_/sk_dev_ + 32+ url-safe characters"
        )
    key = key or keys.generate_key("sk_dev")
    await store.add_key(key, name="dev", owner="dev_user", plan="free")
    return key


async def serve(args: argparse.Namespace) -> None:
    service = AuthorizationService(KeyCache(size=args.cache_size, ttl=args.cache_ttl))
    app = GrpcApp(args.grpc_port, args.host, ["envoy.service.auth.v3.Authorization"])
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(service, app.server)
    store: PostgresKeyStore | None = None

    async def on_start() -> None:
        nonlocal store
        log.info("gRPC listening on %s:%d; connecting to the key store", args.host, app.bound_port)
        store = await PostgresKeyStore.connect(args.database_url)
        if not args.no_dev_key:
            dev_key = await ensure_dev_key(store, args.dev_key)
            # Printed on purpose (seed: "The gateway will print your API key on startup").
            print(f"Dev API key: {dev_key}", flush=True)
        service.store = store
        await app.set_serving(True)
        log.info("ready")

    async def on_stop() -> None:
        if store is not None:
            await store.close()

    await app.run(on_start, on_stop)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="authz %(levelname)s %(message)s", stream=sys.stderr
    )
    try:
        asyncio.run(serve(args))
    except OSError as exc:
        raise SystemExit(f"authz_service: {exc}") from None


if __name__ == "__main__":
    main()
