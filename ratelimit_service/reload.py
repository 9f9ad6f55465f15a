"""Hot reload: poll the config files; a valid new config replaces the old, a bad one is logged
and ignored (the old config keeps serving). Polling survives editors that write a new file
and rename it over the old one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from ratelimit_service import metrics
from ratelimit_service.config import ConfigError, RateLimitConfig, load_config
from ratelimit_service.config.load import config_files

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, int, int], ...]


def fingerprint(path: Path) -> Fingerprint:
    """(name, inode, size, mtime_ns) of every config file: changes when any file does."""
    found = []
    for file in config_files(path) if path.exists() else []:
        try:
            st = file.stat()
        except OSError:
            continue
        found.append((str(file), st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(found)


class ConfigWatcher:
    def __init__(
        self,
        path: Path,
        on_change: Callable[[RateLimitConfig], None],
        transform: Callable[[RateLimitConfig], RateLimitConfig] = lambda c: c,
        merge_domains: bool = False,
    ) -> None:
        self.path = path
        self.merge_domains = merge_domains
        self.on_change = on_change
        self.transform = transform
        self.seen = fingerprint(path)

    def check(self) -> bool | None:
        """Reload if the files changed: True loaded, False rejected, None unchanged."""
        now = fingerprint(self.path)
        if now == self.seen:
            return None
        self.seen = now
        try:
            config = self.transform(load_config(self.path, self.merge_domains))
        except ConfigError as exc:
            metrics.CONFIG_RELOADS.labels("rejected").inc()
            log.error("config reload rejected, keeping the previous config: %s", exc)
            return False
        self.on_change(config)
        metrics.CONFIG_RELOADS.labels("loaded").inc()
        log.info("config reloaded from %s: domains %s", self.path, ", ".join(config.domains))
        return True

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.check()
