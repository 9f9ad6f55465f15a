"""Adapter options: every one is a `--flag` with an environment fallback."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from common.settings import add_option, env_default, positive_int


@dataclass(frozen=True)
class AdapterSettings:
    host: str = "127.0.0.1"
    port: int = 8001
    triton_grpc_url: str = "127.0.0.1:8011"
    triton_metrics_url: str = "http://127.0.0.1:8012/metrics"
    model: str = "embedder"
    model_display_name: str = "sentence-transformers/all-MiniLM-L6-v2"
    max_input_chars: int = 8192
    max_inputs: int = 256
    request_timeout: float = 30.0
    keep_alive: float = 75.0
    log_level: str = "info"
    fast_path: bool = True  # /v1/embed and /v1/embeddings as plain ASGI (inference/adapter/fast_path.py)

    @property
    def model_names(self) -> tuple[str, ...]:
        """Names a client may send as `model`: the display name, its last part, and the Triton name."""
        names = (self.model_display_name, self.model_display_name.rsplit("/", 1)[-1], self.model)
        return tuple(dict.fromkeys(names))


def build_parser() -> argparse.ArgumentParser:
    # Default Triton URLs follow TRITON_GRPC_PORT / TRITON_METRICS_PORT, the launcher's port variables.
    d = AdapterSettings(
        triton_grpc_url=f"127.0.0.1:{env_default('TRITON_GRPC_PORT', 8011, int)}",
        triton_metrics_url=f"http://127.0.0.1:{env_default('TRITON_METRICS_PORT', 8012, int)}/metrics",
    )
    parser = argparse.ArgumentParser(
        prog="python -m inference.adapter", description="HTTP embeddings API in front of Triton."
    )
    add_option(parser, "--host", "ADAPTER_HOST", d.host, "address to bind")
    add_option(parser, "--port", "ADAPTER_PORT", d.port, "port to bind", int)
    add_option(parser, "--triton-grpc-url", "TRITON_GRPC_URL", d.triton_grpc_url, "Triton gRPC host:port")
    add_option(
        parser,
        "--triton-metrics-url",
        "TRITON_METRICS_URL",
        d.triton_metrics_url,
        "Triton Prometheus metrics URL (queue size for /health)",
    )
    add_option(parser, "--model", "TRITON_MODEL", d.model, "Triton model name")
    add_option(
        parser,
        "--model-display-name",
        "ADAPTER_MODEL_DISPLAY_NAME",
        d.model_display_name,
        "model name reported to clients",
    )
    add_option(
        parser,
        "--max-input-chars",
        "ADAPTER_MAX_INPUT_CHARS",
        d.max_input_chars,
        "longest accepted text (input_text, or each item of input), in characters",
        positive_int,
    )
    add_option(
        parser,
        "--max-inputs",
        "ADAPTER_MAX_INPUTS",
        d.max_inputs,
        "most texts in one /v1/embeddings request",
        positive_int,
    )
    add_option(
        parser,
        "--request-timeout",
        "ADAPTER_REQUEST_TIMEOUT_S",
        d.request_timeout,
        "seconds to wait for Triton per request before answering 503",
        float,
    )
    add_option(
        parser,
        "--keep-alive",
        "ADAPTER_KEEP_ALIVE_S",
        d.keep_alive,
        "seconds an idle client connection stays open (keep above Envoy's upstream idle timeout)",
        float,
    )
    add_option(parser, "--log-level", "ADAPTER_LOG_LEVEL", d.log_level, "uvicorn log level")
    add_option(
        parser,
        "--fast-path",
        "ADAPTER_FAST_PATH",
        "on",
        "on|off: answer the embedding routes as plain ASGI (off: through FastAPI, for comparisons)",
        on_off,
    )
    return parser


def on_off(raw: str) -> bool:
    if raw.strip().lower() in ("on", "1", "true", "yes"):
        return True
    if raw.strip().lower() in ("off", "0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"must be on or off, got {raw!r}")


def parse_settings(argv: list[str] | None = None) -> AdapterSettings:
    return AdapterSettings(**vars(build_parser().parse_args(argv)))
