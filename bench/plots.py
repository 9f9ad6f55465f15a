"""PNG plots of one run (matplotlib, no display): latency CDFs, rps bars, embeddings texts/s."""

from __future__ import annotations

from pathlib import Path

from bench.runner import Cell

GROUPS_FOR_RPS = ("proxy", "scaling")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _measured(cells: list[Cell], groups: tuple[str, ...]) -> list[Cell]:
    return [c for c in cells if c.result is not None and c.scenario.group in groups]


def latency_cdf(cells: list[Cell], path: Path, title: str) -> Path | None:
    """One panel per concurrency: percentile (y) against latency (x, log) for every scenario."""
    measured = _measured(cells, ("proxy",))
    levels = sorted({c.concurrency for c in measured})
    if not levels:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(levels), figsize=(5.2 * len(levels), 4.4), squeeze=False, sharey=True)
    for ax, level in zip(axes[0], levels, strict=True):
        for cell in (c for c in measured if c.concurrency == level):
            points = sorted(cell.result.latency_us.items())
            ax.plot([us / 1000 for _, us in points], [p for p, _ in points], label=cell.scenario.title)
        ax.set_xscale("log")
        ax.set_title(f"c={level}")
        ax.set_xlabel("latency (ms, log)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("percentile")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Latency CDF, tiny upstream{title}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def rps_bars(cells: list[Cell], path: Path, title: str) -> Path | None:
    """Requests/s per scenario (rows) and concurrency (bars), log scale, with the ratio to the floor."""
    measured = _measured(cells, GROUPS_FOR_RPS)
    if not measured:
        return None
    plt = _pyplot()
    names = list(dict.fromkeys(c.scenario.name for c in measured))
    levels = sorted({c.concurrency for c in measured})
    by_key = {(c.scenario.name, c.concurrency): c for c in measured}
    floors = {(c.scenario.name, c.concurrency): c.result.rps for c in measured}
    height = 0.8 / len(levels)
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(names) * max(1, len(levels) / 1.5) + 1.5))
    for i, level in enumerate(levels):
        ys, widths, labels = [], [], []
        for row, name in enumerate(names):
            cell = by_key.get((name, level))
            if cell is None:
                continue
            ys.append(row + i * height)
            widths.append(cell.result.rps)
            floor = floors.get((cell.scenario.floor, level))
            labels.append(
                f" {cell.result.rps:,.0f}" + (f" ({cell.result.rps / floor:.2f}x)" if floor else "")
            )
        bars = ax.barh(ys, widths, height=height, label=f"c={level}")
        ax.bar_label(bars, labels=labels, fontsize=7)
    ax.set_yticks([row + height * (len(levels) - 1) / 2 for row in range(len(names))])
    ax.set_yticklabels(
        [by_key[next(k for k in by_key if k[0] == n)].scenario.title for n in names], fontsize=8
    )
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(right=max(c.result.rps for c in measured) * 4)  # room for the labels
    ax.set_xlabel("requests/s (log); in brackets: × Envoy alone at the same concurrency")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"Throughput, tiny upstream{title}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def embeddings_bars(cells: list[Cell], path: Path, title: str) -> Path | None:
    measured = _measured(cells, ("embeddings",))
    if not measured:
        return None
    plt = _pyplot()
    names = list(dict.fromkeys(c.scenario.name for c in measured))
    levels = sorted({c.concurrency for c in measured})
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, name in enumerate(names):
        series = {c.concurrency: c for c in measured if c.scenario.name == name}
        xs = [j + i * width for j, level in enumerate(levels) if level in series]
        cells_ = [series[level] for level in levels if level in series]
        texts = cells_[0].scenario.texts
        bars = ax.bar(xs, [c.result.rps * texts for c in cells_], width=width, label=cells_[0].scenario.title)
        labels = [f"{c.result.rps * texts:.0f}\np50 {c.result.p50_ms:.0f} ms" for c in cells_]
        ax.bar_label(bars, labels=labels, fontsize=7)
    ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(levels))])
    ax.set_xticklabels([f"c={level}" for level in levels])
    ax.set_ylabel("texts/s")
    ax.margins(y=0.2)  # room for the labels
    ax.legend(fontsize=8)
    ax.set_title(f"Embeddings end to end{title}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw(cells: list[Cell], out_dir: Path, name: str, label: str) -> list[Path]:
    """All plots for the run; an empty list (and a hint) when matplotlib is missing."""
    try:
        _pyplot()
    except ImportError:
        print("plots skipped: matplotlib is not installed (pip install -r requirements-dev.txt)")
        return []
    title = f" ({label})" if label else ""
    out_dir.mkdir(parents=True, exist_ok=True)
    made = [
        latency_cdf(cells, out_dir / f"{name}_latency_cdf.png", title),
        rps_bars(cells, out_dir / f"{name}_rps.png", title),
        embeddings_bars(cells, out_dir / f"{name}_embeddings.png", title),
    ]
    return [p for p in made if p is not None]
