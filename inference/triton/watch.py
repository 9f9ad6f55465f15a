"""After start: say when the model is ready; then reload it if its python-backend stub dies.

Triton keeps a model READY after its stub crashed and answers every request with "Stub process is
not healthy", so the launcher watches the stub processes itself.
"""

from __future__ import annotations

import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from inference.triton import say
from inference.triton.shm import TRITON_COMMS

READY_WARN_AFTER_S = 120.0
WATCH_INTERVAL_S = 2.0


def http_status(url: str, post: bool = False, timeout: float = 1.0) -> int:
    """The HTTP status of a GET (or empty POST), 0 when nothing answers."""
    request = urllib.request.Request(url, data=b"" if post else None, method="POST" if post else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def stub_count(server_pid: int) -> int:
    """Live python-backend stubs (children named triton_python_b…) of the server process."""
    count = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm, rest = text[text.find("(") + 1 : text.rfind(")")], text[text.rfind(")") + 2 :].split()
        # A crashed stub stays a zombie (state Z): Triton does not reap it.
        count += comm.startswith(TRITON_COMMS[1]) and rest[0] not in "ZX" and int(rest[1]) == server_pid
    return count


def wait_ready(base: str, proc: subprocess.Popen[bytes], started: float, model: str) -> bool:
    """Poll /v2/health/ready; False if the server exited first."""
    warn_at = started + READY_WARN_AFTER_S
    while http_status(f"{base}/v2/health/ready") != 200:
        if proc.poll() is not None:
            return False
        if time.monotonic() > warn_at:
            say(f"warning: not ready after {READY_WARN_AFTER_S:.0f} s (missing libraries? see log above)")
            warn_at = float("inf")
        time.sleep(0.25)
    say(f"model {model} ready in {time.monotonic() - started:.1f} s")
    return True


def watch(
    base: str, proc: subprocess.Popen[bytes], started: float, model: str, stop: threading.Event
) -> None:
    if not wait_ready(base, proc, started, model):
        return
    stubs = stub_count(proc.pid)
    while not stop.wait(WATCH_INTERVAL_S) and proc.poll() is None:
        if stub_count(proc.pid) >= stubs or http_status(f"{base}/v2/models/{model}/ready") != 200:
            continue  # healthy, or loading/unloaded on purpose (explicit model control)
        say(f"python backend stub of {model} died; reloading the model")
        reload_started = time.monotonic()
        http_status(f"{base}/v2/repository/models/{model}/unload", post=True, timeout=60)
        if http_status(f"{base}/v2/repository/models/{model}/load", post=True, timeout=300) == 200:
            say(f"model {model} reloaded in {time.monotonic() - reload_started:.1f} s")
