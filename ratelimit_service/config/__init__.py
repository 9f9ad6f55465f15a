"""Rate-limit configuration: envoyproxy/ratelimit's YAML format plus our extensions."""

from pathlib import Path

from ratelimit_service.config.load import load_config, parse_text
from ratelimit_service.config.model import DomainConfig, RateLimitConfig, RetryAfterPolicy, Rule
from ratelimit_service.config.parse import ConfigError

DEFAULT_CONFIG = Path(__file__).with_name("default.yaml")

__all__ = [
    "DEFAULT_CONFIG",
    "ConfigError",
    "DomainConfig",
    "RateLimitConfig",
    "RetryAfterPolicy",
    "Rule",
    "load_config",
    "parse_text",
]
