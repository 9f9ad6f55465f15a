"""Last in this folder: `make compose-down` (python -m stack.compose down) leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.containers.conftest import Stack
from tests.procs import ROOT


def test_compose_down_removes_every_container_network_and_volume(stack: Stack) -> None:
    compose = stack.compose
    assert compose.leftovers(), "the stack should still be up before this test"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "stack.compose", "down", "--project", compose.project,
         "--env-file", str(compose.env_file)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    took = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert "removed everything" in result.stdout
    assert compose.leftovers() == []
    stack.record("make compose-down", "no container, network or volume left", f"none left; took {took:.0f} s")
