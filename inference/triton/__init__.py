"""Run Triton Inference Server from the PyPI `nvidia-pytriton` wheel, no Docker: `python -m inference.triton`.

The wheel ships `tritonserver`, its libraries, the python backend and per-Python-version stubs.
The launcher checks the known failure modes first (numpy >= 2, no shared libpython, stale shared
memory), assembles a backends dir under the work dir, writes a copy of the model repository when
flags change a model config (GPU instances, dynamic batching, queue policy, model path), and runs
the server in the foreground, forwarding SIGTERM/SIGINT. A watchdog reloads the model if its
python-backend stub dies.

- `wheel`: find the wheel's files, libpython and numpy checks, the backends dir.
- `repository`: model config overrides (pure, protobuf text format) and the repository copy.
- `device`: CPU or GPU.
- `shm`: stale python-backend shared memory.
- `server`: the tritonserver command line, environment and process.
- `watch`: readiness message and stub watchdog.
- `cli`: flags and `main`.
"""

from __future__ import annotations

import sys


class LaunchError(Exception):
    """A one-line, actionable reason the server cannot be started."""


def say(message: str) -> None:
    print(f"[triton] {message}", file=sys.stderr, flush=True)
