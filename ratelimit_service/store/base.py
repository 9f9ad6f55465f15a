"""What every store takes and returns: windows to decide, and their states back (pure)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ratelimit_service.windows import FixedWindowState, LogState, Window, WindowOutcome, WindowState

ALGORITHM_CODES = {"sliding_window": "w", "fixed_window": "f", "sliding_log": "l"}
CHECK, CHARGE = "check", "charge"  # StoreWindow.mode of token windows


@dataclass(frozen=True, slots=True)
class StoreWindow:
    key: str  # the counter key; windows of one descriptor share its {hash tag}
    window: Window
    enforced: bool = True  # False: shadow mode (evaluated and charged, never blocks)
    # > 0: a quota_mode group (one per descriptor). Such windows block only together: the
    # request is refused when no quota group fits (envoyproxy/ratelimit's quota_mode).
    quota: int = 0
    # Token windows (ratelimit_service.tokens): CHECK blocks when not even one hit is left and is
    # never charged; CHARGE never blocks and is always charged (the tokens were already spent).
    mode: str = ""

    def flag(self) -> str:
        """How the script treats the window: '1' enforced, '0' shadow, 'q<group>' quota,
        't' token check, 'c' token charge."""
        if self.mode:
            return "t" if self.mode == CHECK else "c"
        return f"q{self.quota}" if self.quota else ("1" if self.enforced else "0")


@dataclass(frozen=True, slots=True)
class StoreResult:
    allowed: bool
    states: tuple[WindowOutcome, ...]  # one per StoreWindow, in order
    fits: tuple[bool, ...] = ()  # whether the hits fitted each window (shadow windows: would pass)


class WindowStore(Protocol):
    async def apply(
        self,
        windows: Sequence[StoreWindow],
        hits: int = 1,
        *,
        peek: bool = False,
        now_ms: int | None = None,
    ) -> StoreResult:
        """Decide every window atomically; charge them only when all enforced ones fit (and,
        when there are quota groups, every window of at least one group fits).

        `peek` reads without charging (usage reports). `now_ms` replaces the store's clock
        (tests with a fake clock); by default Redis uses its own TIME.
        """
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


def decode(windows: Sequence[StoreWindow], reply: Sequence[int]) -> StoreResult:
    """Turn the flat reply {allowed, a_1, b_1, c_1, fit_1, ...} into per-algorithm states."""
    states: list[WindowOutcome] = []
    for i, spec in enumerate(windows):
        a, b, c = int(reply[4 * i + 1]), int(reply[4 * i + 2]), int(reply[4 * i + 3])
        algorithm = spec.window.algorithm
        if algorithm == "sliding_window":
            states.append(WindowState(spec.window, a, b, c))
        elif algorithm == "fixed_window":
            states.append(FixedWindowState(spec.window, a, b))
        else:
            states.append(LogState(spec.window, a, b))
    fits = tuple(bool(int(reply[4 * i + 4])) for i in range(len(windows)))
    return StoreResult(bool(int(reply[0])), tuple(states), fits)


_sequence = itertools.count()
_process_token = f"{os.getpid():x}.{os.urandom(3).hex()}"


def request_token() -> str:
    """Unique per request across replicas: members of a sliding log must never collide."""
    return f"{_process_token}.{next(_sequence):x}"
