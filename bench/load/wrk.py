"""Run wrk (Debian package `wrk`) with report.lua and parse its one-line JSON result."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.load.spec import LoadResult, RequestSpec

SCRIPT = Path(__file__).with_name("report.lua")
MARKER = "BENCH_RESULT "
INSTALL_HINT = (
    "wrk is not installed: install it with `sudo apt-get install -y wrk` (Debian/Ubuntu) or "
    "`brew install wrk` (macOS), then rerun. `--load-tool python` runs without it, but its "
    "figures are far below wrk's and only good for checking that the harness works."
)
TIMEOUT_S = 5  # a request slower than this counts as an error (far above any healthy latency)


class WrkError(RuntimeError):
    pass


def wrk_binary() -> str | None:
    return shutil.which("wrk")


def threads_for(concurrency: int) -> int:
    # One wrk thread sustains far more than this stack's rps; a second one only takes CPU from
    # the 2 cores being measured. Two threads only when there are connections enough to spread.
    return 1 if concurrency < 32 else 2


def command(
    url: str, spec: RequestSpec, concurrency: int, seconds: float, files: tuple[str, str]
) -> list[str]:
    body_file, keys_file = files
    binary = wrk_binary()
    if binary is None:
        raise WrkError(INSTALL_HINT)
    return [
        binary, "-t", str(threads_for(concurrency)), "-c", str(concurrency),
        "-d", f"{max(1, round(seconds))}s", "--timeout", f"{TIMEOUT_S}s", "-s", str(SCRIPT), url,
        "--", spec.method, spec.path, body_file, keys_file, spec.content_type,
    ]  # fmt: skip


def parse(output: str, concurrency: int) -> LoadResult:
    """The BENCH_RESULT line printed by report.lua's done() → LoadResult."""
    for line in output.splitlines():
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER) :])
            break
    else:
        raise WrkError(f"wrk printed no result line:\n{output[-2000:]}")
    return LoadResult(
        tool="wrk",
        concurrency=concurrency,
        requests=data["requests"],
        duration_s=data["duration_us"] / 1e6,
        socket_errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
        bad_status=data["status"],
        latency_us={float(p): float(us) for p, us in data["percentiles"]},
        mean_us=data["mean_us"],
        max_us=data["max_us"],
    )


def run(url: str, spec: RequestSpec, concurrency: int, seconds: float) -> LoadResult:
    """Load `url` (scheme://host:port) with `concurrency` connections for `seconds`."""
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        body_file = keys_file = "-"
        if spec.body:
            body_file = str(Path(tmp) / "body")
            Path(body_file).write_bytes(spec.body)
        if spec.keys:
            keys_file = str(Path(tmp) / "keys")
            Path(keys_file).write_text("\n".join(spec.key_lines()) + "\n")
        args = command(url, spec, concurrency, seconds, (body_file, keys_file))
        done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise WrkError(f"wrk exited with {done.returncode}: {done.stderr.strip() or done.stdout[-500:]}")
    return parse(done.stdout, concurrency)
