"""Local, Docker-free stack: embedded Redis/Postgres, Envoy launcher, readiness, `make run`."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / ".run"
