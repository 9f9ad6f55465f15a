"""Run one child process in the foreground and translate our stop signals for it.

Process managers (honcho, pytest fixtures) send SIGTERM/SIGINT; some servers want a
different signal for a fast clean stop (Postgres: SIGINT). The wrapper exits with the
child's code.
"""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def run_foreground(args: list[str], stop_signal: int = signal.SIGTERM, **popen_kwargs: Any) -> int:
    child = subprocess.Popen(args, **popen_kwargs)

    def forward(_signum: int, _frame: object) -> None:
        if child.poll() is None:
            child.send_signal(stop_signal)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = child.wait()
    return code if code >= 0 else 128 - code
