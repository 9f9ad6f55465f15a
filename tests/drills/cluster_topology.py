"""Who owns which slots in a Valkey Cluster (CLUSTER NODES), and a watcher that times a failover."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import redis


def cluster_nodes(port: int) -> dict[str, dict]:
    """address → parsed CLUSTER NODES entry (flags, node_id, master_id, slots), as `port` sees it."""
    with redis.Redis(port=port, socket_timeout=1) as client:
        return client.cluster("nodes")


def owns(entry: dict, slot: int) -> bool:
    return any(int(r[0]) <= slot <= int(r[-1]) for r in entry["slots"])


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1].split("@")[0])


@dataclass(frozen=True)
class Topology:
    masters: dict[int, dict]  # port → entry of each master serving slots
    replica_of: dict[int, int]  # master port → port of its replica

    def owner(self, slot: int) -> int:
        return next(port for port, entry in self.masters.items() if owns(entry, slot))


def topology(port: int) -> Topology:
    nodes = {port_of(addr): entry for addr, entry in cluster_nodes(port).items()}
    masters = {p: e for p, e in nodes.items() if "master" in e["flags"] and e["slots"]}
    by_id = {e["node_id"]: p for p, e in masters.items()}
    replicas = {by_id[e["master_id"]]: p for p, e in nodes.items() if e["master_id"] in by_id}
    return Topology(masters, replicas)


class FailoverWatch(threading.Thread):
    """Polls a surviving node: seconds after `started` until it flags the victim FAIL and until the
    victim's replica is a master serving slots with cluster_state ok."""

    def __init__(self, observer: int, victim: int, replica: int, started: float, limit: float = 20) -> None:
        super().__init__(daemon=True)
        self.observer, self.victim, self.replica = observer, victim, replica
        self.started, self.limit = started, limit
        self.failed_at: float | None = None
        self.promoted_at: float | None = None

    def run(self) -> None:
        while time.monotonic() - self.started < self.limit and self.promoted_at is None:
            try:
                nodes = {port_of(addr): entry for addr, entry in cluster_nodes(self.observer).items()}
                with redis.Redis(port=self.observer, socket_timeout=1) as client:
                    state_ok = client.cluster("info")["cluster_state"] == "ok"
            except redis.RedisError:
                time.sleep(0.05)
                continue
            now = time.monotonic() - self.started
            flags = set(nodes[self.victim]["flags"].split(","))
            if self.failed_at is None and "fail" in flags:
                self.failed_at = now
            promoted = nodes[self.replica]
            if "master" in promoted["flags"] and promoted["slots"] and state_ok:
                self.promoted_at = now
            time.sleep(0.05)
