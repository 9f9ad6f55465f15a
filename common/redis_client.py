"""One Redis client from a URL, whatever the deployment: the schemes every service accepts.

redis://, rediss://, unix:// (single node), redis+cluster://h:p[,h:p] (Cluster) and
redis+sentinel://h:p[,h:p]/service[/db] (Sentinel). No retries: a command whose reply was lost
may have run, and callers decide whether running it again is safe.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import redis.asyncio as redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

SINGLE_NODE = ("redis", "rediss", "unix")
CLUSTER = ("redis+cluster", "rediss+cluster")


def hosts(netloc: str, default_port: int) -> list[tuple[str, int]]:
    found = []
    for part in netloc.rsplit("@", 1)[-1].split(","):
        host, _, port = part.rpartition(":") if ":" in part else (part, "", "")
        found.append((host or "127.0.0.1", int(port or default_port)))
    return found


def client_from_url(url: str, timeout: float, max_connections: int = 64) -> redis.Redis | RedisCluster:
    """A client for `url` (ValueError for a scheme or form it cannot use); connects on first use."""
    options = {"socket_timeout": timeout, "socket_connect_timeout": timeout, "retry": Retry(NoBackoff(), 0)}
    parts = urlsplit(url)
    password = unquote(parts.password) if parts.password else None
    username = unquote(parts.username) if parts.username else None
    if parts.scheme in SINGLE_NODE:
        # A burst larger than the pool waits (up to the timeout) instead of failing at once.
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=timeout, **options
        )
        return redis.Redis(connection_pool=pool)
    if parts.scheme in CLUSTER:
        nodes = [ClusterNode(h, p) for h, p in hosts(parts.netloc, 6379)]
        return RedisCluster(
            startup_nodes=nodes,
            username=username,
            password=password,
            ssl=parts.scheme.startswith("rediss"),
            **options,
        )
    if parts.scheme == "redis+sentinel":
        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise ValueError("redis+sentinel:// needs the service name: redis+sentinel://host:26379/mymaster")
        db = int(path[1]) if len(path) > 1 else 0
        sentinels = hosts(parts.netloc, 26379)
        sentinel = Sentinel(sentinels, sentinel_kwargs={"socket_timeout": timeout}, **options)
        return sentinel.master_for(path[0], db=db, username=username, password=password)
    raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r}")
