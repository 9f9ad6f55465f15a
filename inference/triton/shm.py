"""Python-backend shared memory regions left in /dev/shm by crashed Triton runs."""

from __future__ import annotations

from pathlib import Path

from inference.triton import say

SHM_DIR = Path("/dev/shm")
SHM_PREFIX = "triton_python_backend_shm_region_"
TRITON_COMMS = ("tritonserver", "triton_python_b")  # /proc/<pid>/comm is cut at 15 chars


def stale_shm_regions(shm_dir: Path = SHM_DIR) -> list[Path] | None:
    """Python-backend shm regions mapped by no running Triton process; None when we cannot tell."""
    regions = set(shm_dir.glob(SHM_PREFIX + "*"))
    if not regions:
        return []
    in_use: set[Path] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if not (proc / "comm").read_text().strip().startswith(TRITON_COMMS):
                continue
            maps = (proc / "maps").read_text()
        except FileNotFoundError:
            continue  # exited meanwhile
        except PermissionError:
            return None  # someone else's Triton: its regions are invisible to us
        for line in maps.splitlines():
            if SHM_PREFIX in line:
                in_use.add(Path(line.split(None, 5)[-1].removesuffix(" (deleted)")))
    return sorted(regions - in_use)


def clean_shm(shm_dir: Path = SHM_DIR) -> list[Path]:
    """Remove stale regions (they fill /dev/shm until the stub cannot start); returns those removed."""
    stale = stale_shm_regions(shm_dir)
    if stale is None:
        say(f"warning: cannot tell which {shm_dir}/{SHM_PREFIX}* are stale; leaving them")
        return []
    removed = []
    for path in stale:
        try:
            path.unlink()
            removed.append(path)
        except OSError as exc:
            say(f"warning: could not remove stale {path}: {exc}")
    if removed:
        say(f"removed {len(removed)} stale shm region(s) left by crashed Triton runs")
    return removed
