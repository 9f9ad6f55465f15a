"""Hot reload survives how kubelet updates a mounted ConfigMap: the files are links through a
`..data` symlink that is swapped atomically to a new timestamped folder; nothing is written in
place. Reproduced here in a temp folder, as kubelet's atomic writer does it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ratelimit_service.config import RateLimitConfig
from ratelimit_service.reload import ConfigWatcher

LIMITS = (
    "domain: gateway\ndescriptors:\n  - key: api_key\n"
    "    rate_limit: {{unit: hour, requests_per_unit: {n}}}\n"
)


def kubelet_update(folder: Path, version: int, files: dict[str, str]) -> None:
    """Write a new ..<timestamp> folder, swap ..data to it with a rename, link the files, drop the old."""
    fresh = folder / f"..2026_12_07_05_00_0{version}.{version}"
    fresh.mkdir()
    for name, text in files.items():
        (fresh / name).write_text(text)
    old = os.readlink(folder / "..data") if (folder / "..data").is_symlink() else None
    (folder / "..data_tmp").symlink_to(fresh.name)
    os.rename(folder / "..data_tmp", folder / "..data")  # the atomic swap
    for name in files:
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(f"..data/{name}")
    if old is not None:
        shutil.rmtree(folder / old)


def limit_of(config: RateLimitConfig) -> int:
    domain = config.domain("gateway")
    assert domain is not None
    rule = domain.rule_for([("api_key", "k")])
    assert rule is not None
    return rule.windows[0].limit


def test_a_swapped_data_link_is_reloaded_and_a_bad_swap_keeps_the_old_config(tmp_path: Path) -> None:
    folder = tmp_path / "ratelimit"
    folder.mkdir()
    kubelet_update(folder, 1, {"ratelimit.yaml": LIMITS.format(n=2)})
    loaded: list[RateLimitConfig] = []
    watcher = ConfigWatcher(folder, loaded.append)
    assert watcher.check() is None  # nothing changed yet

    kubelet_update(folder, 2, {"ratelimit.yaml": LIMITS.format(n=5)})
    assert watcher.check() is True
    assert limit_of(loaded[-1]) == 5
    # The file is read once, through its top-level link, not again inside ..data or ..<timestamp>.
    assert loaded[-1].sources == (str(folder / "ratelimit.yaml"),)

    kubelet_update(folder, 3, {"ratelimit.yaml": "domain: [broken\n"})
    assert watcher.check() is False and len(loaded) == 1  # rejected: the limiter keeps the old one

    kubelet_update(folder, 4, {"ratelimit.yaml": LIMITS.format(n=7)})
    assert watcher.check() is True and limit_of(loaded[-1]) == 7
