"""Parse human durations for the CLI and settings: `30d`, `24h`, `90m`, `45s`, `2w`, `0`."""

from __future__ import annotations

import re
from datetime import timedelta

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"(\d+)\s*([smhdw]?)")
MAX_DURATION = timedelta(days=3650)  # ten years: beyond this it is a typo, not a plan


def parse_duration(text: str) -> timedelta:
    """`30d` → 30 days. A bare number means seconds. Raises ValueError with a readable message."""
    match = _DURATION_RE.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"invalid duration {text!r}: use a number and a unit, e.g. 45s, 90m, 24h, 30d, 2w")
    amount, unit = int(match.group(1)), match.group(2) or "s"
    duration = timedelta(seconds=amount * UNITS[unit])
    if duration > MAX_DURATION:
        raise ValueError(f"invalid duration {text!r}: longer than {MAX_DURATION.days} days")
    return duration


def format_duration(duration: timedelta) -> str:
    """The largest whole unit that fits exactly: 86400 s → `1d`, 5400 s → `90m`."""
    seconds = int(duration.total_seconds())
    for unit, size in sorted(UNITS.items(), key=lambda item: -item[1]):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
