"""Off-hot-path helpers for `/health`: Triton queue depth from its metrics, the gateway version."""

from __future__ import annotations

import importlib.metadata
import tomllib
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

PENDING_METRIC = "nv_inference_pending_request_count"
DIST_NAME = "inference-gateway"
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def parse_pending_requests(text: str, metric: str = PENDING_METRIC) -> int:
    """Sum of the gauge `metric` over all its series (models, versions) in Prometheus text format."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == metric:
            total += sum(sample.value for sample in family.samples)
    return int(total)


def fetch_queue_size(url: str, timeout_s: float = 0.5) -> int | None:
    """Blocking (run it in a thread): requests pending in Triton now, or None if metrics are unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return parse_pending_requests(resp.read().decode("utf-8", "replace"))
    except (OSError, ValueError):
        return None


def package_version() -> str:
    """The installed distribution's version, else the in-tree pyproject.toml's, else '0.0.0'."""
    try:
        return importlib.metadata.version(DIST_NAME)
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        return str(tomllib.loads(PYPROJECT.read_text())["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "0.0.0"


def health_body(
    ready: bool, version: str, model: str, device: str | None, queue_size: int | None, inflight: int
) -> tuple[int, dict[str, object]]:
    """(HTTP status, body) for /health in seed 000's shape: 200 healthy, 503 degraded."""
    body = {
        "status": "healthy" if ready else "degraded",
        "gateway_version": version,
        "inference_service": {
            "status": "healthy" if ready else "unavailable",
            "model": model,
            "device": device or "unknown",
            "queue_size": queue_size or 0,
            "inflight_batches": inflight,
        },
    }
    return (200 if ready else 503), body
