"""Client threads keeping requests flowing through Envoy during a drill, with a tally per key."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from tests.drills.wire import is_error_shape


@dataclass
class Load:
    """One thread per (label, key): POST `path` back to back; `tally[label]` counts statuses.

    Each thread has at most one request in flight, so len(clients) bounds what a fault can catch
    mid-call. Transport errors (no HTTP answer at all) count as "transport".
    """

    url: str
    clients: list[tuple[str, str]]
    path: str = "/v1/embed"
    timeout: float = 5
    text: str = ""  # appended to every input (a longer text keeps a real model busy longer)
    tally: dict[str, Counter] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, warm_up: float = 1.0) -> Load:
        for label, key in self.clients:
            self.tally.setdefault(label, Counter())
            thread = threading.Thread(target=self._client, args=(label, key), daemon=True)
            self._threads.append(thread)
            thread.start()
        time.sleep(warm_up)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)

    def _client(self, label: str, key: str) -> None:
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=self.url, timeout=self.timeout, headers=headers) as http:
            n = 0
            while not self._stop.is_set():
                n += 1
                try:
                    response = http.post(self.path, json={"input_text": f"{label} {n} {self.text}"})
                except httpx.TransportError:
                    self._count(label, "transport", False)
                    continue
                self._count(
                    label, response.status_code, is_error_shape(response.status_code, response.content)
                )

    def _count(self, label: str, status: int | str, shaped: bool) -> None:
        with self._lock:  # several client threads share one tally
            tally = self.tally[label]
            tally["sent"] += 1
            tally[status] += 1
            tally["bad_shape"] += not shaped

    def snapshot(self, label: str) -> Counter:
        with self._lock:
            return Counter(self.tally[label])

    def total(self, what: int | str) -> int:
        with self._lock:
            return sum(tally[what] for tally in self.tally.values())

    def outside(self, allowed: set[int]) -> int:
        """Answers with a status not in `allowed` (transport errors included), every label."""
        with self._lock:
            return sum(t["sent"] - sum(t[status] for status in allowed) for t in self.tally.values())

    def summary(self) -> dict[str, dict]:
        with self._lock:
            return {label: dict(tally) for label, tally in self.tally.items()}
