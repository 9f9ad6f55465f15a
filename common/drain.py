"""When a stopping gRPC server may close: once every load balancer checking it has seen NOT_SERVING.

Envoy health-checks each host over one long-lived connection (a stable peer address) and marks
it unhealthy after `unhealthy_threshold` failed checks. A replica that reports NOT_SERVING and
keeps serving until each such peer has been told so that many times loses no request; one
that nobody health-checks (tests, a lone process) has nothing to wait for. Pure: the caller
passes the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Must match unhealthy_threshold of the sidecar clusters in envoy/envoy.yaml.tmpl.
CHECKS_TO_MARK_DOWN = 2
# A peer that checked twice within this window is a load balancer still watching us; one-off
# probes (readiness scripts, compose healthchecks) open a new connection each time.
WATCHER_WINDOW_S = 10.0
# A watcher silent this long during the drain has stopped (its Envoy is shutting down too):
# Envoy checks every 1–2 s, so there is nobody left to wait for.
GONE_AFTER_S = 3.0


@dataclass
class _Peer:
    checks: int = 0
    last_seen: float = 0.0
    told_down: int = 0  # NOT_SERVING answers since the drain began


@dataclass
class DrainTracker:
    peers: dict[str, _Peer] = field(default_factory=dict)
    draining: bool = False

    def checked(self, peer: str, serving: bool, now: float) -> None:
        """Record one health-check answer sent to `peer`."""
        seen = self.peers.setdefault(peer, _Peer())
        seen.checks += 1
        seen.last_seen = now
        if self.draining and not serving:
            seen.told_down += 1

    def begin(self) -> None:
        self.draining = True
        for seen in self.peers.values():
            seen.told_down = 0

    def watchers(self, now: float) -> list[str]:
        return [
            peer
            for peer, seen in self.peers.items()
            if seen.checks >= 2 and now - seen.last_seen <= WATCHER_WINDOW_S
        ]

    def done(self, now: float) -> bool:
        """True when every watching load balancer has marked us down, stopped, or none watches."""
        return all(
            seen.told_down >= CHECKS_TO_MARK_DOWN or now - seen.last_seen > GONE_AFTER_S
            for seen in (self.peers[peer] for peer in self.watchers(now))
        )
