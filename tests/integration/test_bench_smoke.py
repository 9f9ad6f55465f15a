"""`python -m bench`, shortened: real Envoy, a real do-nothing sidecar chain, the Python load generator.

Asserts only that the harness produced numbers and files, never how fast anything was
(the machine is shared; timings belong to `make bench`). Needs no wrk.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from tests.procs import ROOT


def test_shortened_run_writes_numbers_results_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "results"
    command = [
        sys.executable, "-m", "bench", "--load-tool", "python", "--seconds", "1", "--warmup", "0",
        "--scenarios", "envoy,noop-both,standard", "--concurrency", "2", "--rounds", "2", "--out", str(out),
        "--run-dir", str(tmp_path / "run"), "--label", "CI smoke", "--paired-rounds", "1",
        "--paired-seconds", "1",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    document = json.loads((out / "bench.json").read_text())
    cells = {c["scenario"]: c for c in document["cells"]}
    assert set(cells) == {"envoy", "noop-both", "standard"}
    for cell in cells.values():
        assert cell["error"] is None, cell["error"]
        assert cell["requests"] > 0 and cell["rps"] > 0
        assert cell["p50_ms"] > 0 and cell["p99_ms"] >= cell["p50_ms"]
        assert cell["failures"] == 0
        assert len(cell["round_rps"]) == 2 and cell["rps"] in cell["round_rps"]  # both rounds ran
    assert cells["noop-both"]["rps_vs_floor"] > 0  # a ratio taken against the floor of the same run
    # Both do-nothing sidecars were really on the path: Envoy counted their decisions.
    counters = cells["noop-both"]["envoy_counters"]
    for decision in (".ext_authz.ok", ".ratelimit.ok"):
        counted = max(v for name, v in counters.items() if name.endswith(decision))
        assert counted >= cells["noop-both"]["requests"], counters
    assert document["command"].startswith("python -m bench --load-tool python")
    # The targets these scenarios allow were measured again in a paired round, side by side.
    paired = {t["name"]: t for t in document["paired_targets"]}
    assert set(paired) == {"standard vs do-nothing floor", "added p50 at c=1", "p99 at c=64"}
    assert all(len(t["rounds"]) == 1 and t["measured"] == t["rounds"][0] for t in paired.values()), paired
    assert paired["standard vs do-nothing floor"]["measured"] > 0

    rows = list(csv.DictReader((out / "bench.csv").open()))
    assert [r["scenario"] for r in rows] == ["envoy", "noop-both", "standard"]
    assert "| target |" in (out / "bench.md").read_text()
    assert (out / "bench_latency_cdf.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "bench_rps.png").read_bytes().startswith(b"\x89PNG")
