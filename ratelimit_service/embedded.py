"""The limiter inside another process: the one public face of ratelimit_service for other services.

Fused mode runs the limiter in the authz service, and the key API reads a key's usage through
it. They build, run and answer with what is below (the same config, store, Lua script and
answers as the ratelimit service itself) and never import this package's modules one by one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import grpc

from ratelimit_service import responses, tokens
from ratelimit_service.config import DEFAULT_CONFIG, ConfigError, RateLimitConfig, load_config
from ratelimit_service.config.model import with_unit_limits
from ratelimit_service.limiter import OK, UNAVAILABLE, Limiter, Verdict
from ratelimit_service.local_cache import OverLimitCache
from ratelimit_service.plan import RequestDescriptor
from ratelimit_service.reload import ConfigWatcher
from ratelimit_service.service import RateLimitService, add_to_server
from ratelimit_service.store import store_from_url
from ratelimit_service.usage import DEFAULT_DOMAIN, limiter_usage

# Answers, exactly as the ratelimit service gives them.
STORE_UNAVAILABLE = responses.STORE_UNAVAILABLE
limit_header_values = responses.limit_header_values
over_limit_answer = responses.from_verdict
# Token limits: the descriptor entries of a key's token windows and the metadata that carries them.
TOKEN_LIMITS_KEY = tokens.LIMITS_KEY
token_entries = tokens.entries
format_token_limits = tokens.format_limits

__all__ = [
    "DEFAULT_DOMAIN", "OK", "STORE_UNAVAILABLE", "TOKEN_LIMITS_KEY", "UNAVAILABLE", "ConfigError",
    "ConfigWatcher", "Limiter", "RequestDescriptor", "Verdict", "build_limiter", "config_watcher",
    "format_token_limits", "limit_header_values", "limiter_usage", "over_limit_answer",
    "serve_rate_limit_service", "token_entries",
]  # fmt: skip


def limits_config(path: Path | None, unit_limits: Mapping[str, int] | None = None) -> RateLimitConfig:
    """The service's config: a file as it is, or the built-in one with the plan defaults."""
    if path is not None:
        return load_config(path)
    config = load_config(DEFAULT_CONFIG)
    return with_unit_limits(config, unit_limits) if unit_limits else config


def build_limiter(
    redis_url: str,
    store_timeout: float,
    config_path: Path | None = None,
    unit_limits: Mapping[str, int] | None = None,
    remember_denials: bool = True,
) -> Limiter:
    """A limiter built as the ratelimit service builds its own (ConfigError or ValueError: a bad
    config or store URL). `remember_denials`: the local over-limit cache (off for read-only use)."""
    cache = OverLimitCache() if remember_denials else None
    return Limiter(limits_config(config_path, unit_limits), store_from_url(redis_url, store_timeout), cache)


def config_watcher(path: Path | None, limiter: Limiter) -> ConfigWatcher | None:
    """Reloads a config file on change (a bad file keeps the previous config); None for built-in."""
    return None if path is None else ConfigWatcher(path, limiter.set_config)


def serve_rate_limit_service(limiter: Limiter, server: grpc.aio.Server) -> None:
    """Answer Envoy's ShouldRateLimit on `server` with this limiter (same as the ratelimit service)."""
    add_to_server(RateLimitService(limiter), server)
