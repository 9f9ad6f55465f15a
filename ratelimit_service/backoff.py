"""Retry-After: exact (seconds until the denying window frees a slot) or progressive (seed 003).

Progressive tiers by overage (requests denied since the window went over): light (<= 10)
1-3 s, moderate (<= 30) 3-8 s, heavy (> 30) 8-15 s, growing within each tier, then ± jitter
so clients do not retry in lockstep. Never longer than the exact wait: past that moment the
client would be admitted anyway.
"""

from __future__ import annotations

import random

TIERS = ((10, 1.0, 3.0), (30, 3.0, 8.0), (100, 8.0, 15.0))  # (overage up to, low s, high s)


def progressive_seconds(overage: int) -> float:
    """The tier value for `overage` before jitter: 1 s at the first denial, 15 s from 100 on."""
    floor = 0
    for top, low, high in TIERS:
        if overage <= top:
            return low + (high - low) * (max(overage, floor + 1) - floor - 1) / max(1, top - floor - 1)
        floor = top
    return TIERS[-1][2]


def progressive_retry_after(overage: int, exact_seconds: int, jitter: float, rng: random.Random) -> int:
    value = progressive_seconds(overage) * (1 + rng.uniform(-jitter, jitter))
    return max(1, min(exact_seconds, round(value)))
