"""Results on disk: <name>.json (everything), <name>.csv (one row per cell), <name>.md (tables)."""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.runner import Cell, busy_processes
from bench.targets import Verdict
from stack import envoy as envoy_launcher

CSV_FIELDS = (
    "scenario", "title", "group", "concurrency", "tool", "requests", "duration_s", "rps",
    "p50_ms", "p90_ms", "p99_ms", "p99_9_ms", "max_ms", "failures", "floor", "rps_vs_floor",
    "p50_added_ms", "error",
)  # fmt: skip


@dataclass(frozen=True)
class RunInfo:
    command: str
    label: str
    started: str
    finished: str
    settings: dict[str, Any]


def machine() -> dict[str, Any]:
    try:
        version = subprocess.run(
            [envoy_launcher.envoy_binary(), "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, SystemExit):
        version = "unknown"
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "envoy": _release(version)}  # fmt: skip


def _release(version: str) -> str:
    """`envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL` → `1.40.0`."""
    build = version.rpartition("version: ")[2]
    parts = build.split("/")
    return parts[1] if len(parts) > 1 else build or "unknown"


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


def row(cell: Cell, cells: list[Cell]) -> dict[str, Any]:
    """One cell as a flat record, with its ratios to its floor measured in the same run."""
    out: dict[str, Any] = {
        "scenario": cell.scenario.name, "title": cell.scenario.title, "group": cell.scenario.group,
        "concurrency": cell.concurrency, "floor": cell.scenario.floor, "error": cell.error,
    }  # fmt: skip
    r = cell.result
    if r is None:
        return out
    floor = next((c.result for c in cells if c.result and c.scenario.name == cell.scenario.floor
                  and c.concurrency == cell.concurrency), None)  # fmt: skip
    out.update(
        tool=r.tool, requests=r.requests, duration_s=_round(r.duration_s), rps=_round(r.rps, 1),
        p50_ms=_round(r.p50_ms), p90_ms=_round(r.percentile_ms(90)), p99_ms=_round(r.p99_ms),
        p99_9_ms=_round(r.percentile_ms(99.9)), max_ms=_round(r.max_us / 1000), failures=r.failures,
        rps_vs_floor=_round(r.rps / floor.rps) if floor and floor.rps else None,
        p50_added_ms=_round(r.p50_ms - floor.p50_ms) if floor else None,
    )  # fmt: skip
    return out


def write(out_dir: Path, name: str, info: RunInfo, cells: list[Cell], verdicts: list[Verdict],
          plots: list[Path], paired: list[Verdict] | None = None) -> list[Path]:  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [row(c, cells) for c in cells]
    document = {
        "command": info.command, "label": info.label, "started": info.started, "finished": info.finished,
        "machine": machine(), "settings": info.settings,
        "cells": [
            {**r, "socket_errors": c.result.socket_errors if c.result else None,
             "bad_status": c.result.bad_status if c.result else None, "warnings": c.warnings,
             "round": c.round, "round_rps": [round(x, 1) for x in c.round_rps], "envoy_counters": c.counters,
             "cpu_us_per_request": c.cpu_us_per_request,
             "latency_us": sorted(c.result.latency_us.items()) if c.result else []}
            for r, c in zip(rows, cells, strict=True)
        ],
        "targets": [{"name": v.name, "goal": v.goal, "measured": _round(v.measured), "limit": v.limit,
                     "status": v.status} for v in verdicts],
        "paired_targets": [{"name": v.name, "goal": v.goal, "measured": _round(v.measured),
                            "rounds": [_round(x) for x in v.rounds], "limit": v.limit, "status": v.status}
                           for v in paired or []],
        "plots": [p.name for p in plots],
    }  # fmt: skip
    json_path, csv_path, md_path = (out_dir / f"{name}.{ext}" for ext in ("json", "csv", "md"))
    json_path.write_text(json.dumps(document, indent=1) + "\n")
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    md_path.write_text(markdown(info, document["machine"], rows, cells, verdicts, plots, paired or []))
    return [json_path, csv_path, md_path]


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def cells_table(rows: list[dict[str, Any]], cells: list[Cell]) -> str:
    lines = ["| scenario | c | rps | p50 ms | p99 ms | × floor | p50 vs floor | notes |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for r, cell in zip(rows, cells, strict=True):
        cpu = ", ".join(f"{n} {us:.0f}" for n, us in busy_processes(cell).items())
        rounds = " / ".join(f"{x:,.0f}" for x in cell.round_rps)
        notes = cell.error or "; ".join(
            [
                *cell.warnings,
                *([f"median of {len(cell.round_rps)} rounds: {rounds} rps"] if rounds else []),
                *([f"CPU µs/req: {cpu}"] if cpu else []),
            ]
        )
        floor = (
            f"{_fmt(r.get('rps_vs_floor'), '.2f')} {r['floor']}" if r.get("rps_vs_floor") is not None else "–"
        )
        figures = [_fmt(r.get("rps"), ",.0f"), _fmt(r.get("p50_ms"), ".2f"), _fmt(r.get("p99_ms"), ".2f")]
        added = _fmt(r.get("p50_added_ms"), "+.2f")
        lines.append(
            f"| {r['title']} | {r['concurrency']} | {' | '.join(figures)} | {floor} | {added} | {notes} |"
        )
    return "\n".join(lines)


def headline_table(rows: list[dict[str, Any]], concurrency: int = 16) -> str:
    """One line per proxy/scaling scenario at one concurrency: the table the top README shows."""
    lines = [
        f"| c={concurrency}, tiny upstream | rps | × Envoy alone | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["concurrency"] == concurrency and r["group"] != "embeddings" and r.get("rps") is not None:
            lines.append(
                f"| {r['title']} | {r['rps']:,.0f} | {_fmt(r.get('rps_vs_floor'), '.2f')} "
                f"| {_fmt(r.get('p50_ms'), '.2f')} | {_fmt(r.get('p99_ms'), '.2f')} |"
            )
    return "\n".join(lines)


def targets_table(verdicts: list[Verdict]) -> str:
    if any(v.rounds for v in verdicts):
        lines = ["| target | required | median | each round | |", "|---|---|---:|---|---|"]
        for v in verdicts:
            each = " / ".join(f"{x:.2f}" for x in v.rounds) or "–"
            lines.append(f"| {v.name} | {v.goal} | {v.shown()} | {each} | {v.status} |")
        return "\n".join(lines)
    lines = ["| target | required | measured | |", "|---|---|---:|---|"]
    lines += [f"| {v.name} | {v.goal} | {v.shown()} | {v.status} |" for v in verdicts]
    return "\n".join(lines)


def markdown(info: RunInfo, host: dict[str, Any], rows: list[dict[str, Any]], cells: list[Cell],
             verdicts: list[Verdict], plots: list[Path], paired: list[Verdict]) -> str:  # fmt: skip
    label = f" ({info.label})" if info.label else ""
    parts = [
        f"# Benchmark results{label}",
        f"Command: `{info.command}`  \nRun: {info.started} → {info.finished}  \n"
        f"Machine: {host['cpus']} CPUs, {host['platform']}, Python {host['python']}, "
        f"Envoy {host['envoy']}  \n"
        f"Settings: {json.dumps(info.settings)}",
        *(["## Targets (paired rounds: each target's two sides back to back, median over rounds)",
           targets_table(paired)] if paired else []),
        "## Targets (from the cells below)" if paired else "## Targets (ratios from this run)",
        targets_table(verdicts),
        "## Headline", headline_table(rows),
        "## All cells", cells_table(rows, cells),
        *[f"![{p.stem}]({p.name})" for p in plots],
    ]  # fmt: skip
    return "\n\n".join(parts) + "\n"
