"""envoyproxy/ratelimit's environment settings that we honour (docs/ratelimit.md lists them all).

- RUNTIME_ROOT / RUNTIME_SUBDIRECTORY / RUNTIME_APPDIRECTORY (default `config`): when either of
  the first two is set and no --config / RATELIMIT_CONFIG is given, the config files are the
  *.yaml under <root>/<subdirectory>/<appdirectory>/, reloaded on change (a swapped symlink
  included). Lyft's RUNTIME_ROOT default (/srv/runtime_data/current) applies once
  RUNTIME_SUBDIRECTORY is set.
- MERGE_DOMAIN_CONFIG=true: several files may configure one domain; their descriptors join.
- NEAR_LIMIT_RATIO (default 0.8): where the near_limit stat starts counting.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from common.settings import truthy

LYFT_DEFAULT_ROOT = "/srv/runtime_data/current"


def runtime_config_dir(env: Mapping[str, str] = os.environ) -> Path | None:
    """The config folder of Lyft's runtime layout, or None when the layout is not configured."""
    root, subdirectory = env.get("RUNTIME_ROOT", ""), env.get("RUNTIME_SUBDIRECTORY", "")
    if not root and not subdirectory:
        return None
    return Path(root or LYFT_DEFAULT_ROOT, subdirectory, env.get("RUNTIME_APPDIRECTORY") or "config")


def merge_domains(env: Mapping[str, str] = os.environ) -> bool:
    return truthy(env.get("MERGE_DOMAIN_CONFIG", ""))


def near_limit_ratio(env: Mapping[str, str] = os.environ) -> float:
    raw = env.get("NEAR_LIMIT_RATIO", "") or "0.8"
    try:
        ratio = float(raw)
    except ValueError:
        raise ValueError(f"NEAR_LIMIT_RATIO must be a number between 0 and 1, got {raw!r}") from None
    if not 0 <= ratio <= 1:
        raise ValueError(f"NEAR_LIMIT_RATIO must be a number between 0 and 1, got {raw!r}")
    return ratio
