"""Run Triton Inference Server from the PyPI `nvidia-pytriton` wheel, no Docker: `python -m inference.triton`.

The wheel ships `tritonserver`, its libraries, the python backend and per-Python-version stubs.
We assemble a backends dir under the work dir, point LD_LIBRARY_PATH at the wheel's libs and
this interpreter's libpython, and run the server in the foreground, forwarding SIGTERM/SIGINT.
Readiness is for clients to poll (`GET /v2/health/ready`); we only print when it happens.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.metadata
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from common.settings import add_option

REPO_MODELS = Path(__file__).resolve().parent / "model_repository"
SHM_DIR = Path("/dev/shm")
SHM_PREFIX = "triton_python_backend_shm_region_"
TRITON_COMMS = ("tritonserver", "triton_python_b")  # /proc/<pid>/comm is cut at 15 chars
READY_WARN_AFTER_S = 120.0
WATCH_INTERVAL_S = 2.0


class LaunchError(Exception):
    """A one-line, actionable reason the server cannot be started."""


@dataclass(frozen=True)
class Wheel:
    server: Path  # tritonserver binary
    python_backend: Path  # libtriton_python.so + triton_python_backend_utils.py
    stub: Path  # triton_python_backend_stub for this Python version
    libs: Path  # nvidia_pytriton.libs (auditwheel-vendored shared libraries)


def say(message: str) -> None:
    print(f"[triton] {message}", file=sys.stderr, flush=True)


def device_choice(raw: str) -> str:
    if raw not in ("auto", "cpu", "gpu"):
        raise argparse.ArgumentTypeError(f"must be auto, cpu or gpu, got {raw!r}")
    return raw


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m inference.triton", description=__doc__.splitlines()[0])
    add_option(parser, "--model-repository", "TRITON_MODEL_REPOSITORY", str(REPO_MODELS), "model repository")
    add_option(parser, "--model", "TRITON_MODEL", "embedder", "model to load (explicit model control)")
    add_option(parser, "--host", "TRITON_HOST", "127.0.0.1", "address for the HTTP, gRPC and metrics ports")
    add_option(parser, "--http-port", "TRITON_HTTP_PORT", 8010, "HTTP port", int)
    add_option(parser, "--grpc-port", "TRITON_GRPC_PORT", 8011, "gRPC port", int)
    add_option(parser, "--metrics-port", "TRITON_METRICS_PORT", 8012, "Prometheus metrics port", int)
    add_option(parser, "--work-dir", "TRITON_WORK_DIR", ".run/triton", "scratch dir (backends, GPU repo)")
    add_option(parser, "--device", "TRITON_DEVICE", "auto", "auto|cpu|gpu (auto: GPU if any)", device_choice)
    add_option(parser, "--log-verbose", "TRITON_LOG_VERBOSE", 0, "tritonserver --log-verbose level", int)
    return parser


def check_numpy() -> None:
    # numpy >= 2 crashes the python backend stub on the first request (see notes/triton.md).
    try:
        version = importlib.metadata.version("numpy")
    except importlib.metadata.PackageNotFoundError:
        raise LaunchError(f"numpy is not installed in {sys.prefix}; install 'numpy<2'") from None
    if int(version.split(".")[0]) >= 2:
        raise LaunchError(f"numpy {version} in {sys.prefix}: the Triton python stub needs numpy<2")


def find_wheel() -> Wheel:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise LaunchError("package nvidia-pytriton is not installed (pip install nvidia-pytriton)")
    root = Path(next(iter(spec.submodule_search_locations)))
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    dist = root / "tritonserver"
    wheel = Wheel(
        server=dist / "bin" / "tritonserver",
        python_backend=dist / "backends" / "python",
        stub=dist / "python_backend_stubs" / version / "triton_python_backend_stub",
        libs=root.parent / "nvidia_pytriton.libs",
    )
    for path in (wheel.server, wheel.python_backend / "libtriton_python.so", wheel.stub, wheel.libs):
        if not path.exists():
            raise LaunchError(f"nvidia-pytriton wheel at {root} lacks {path} (Python {version} supported?)")
    return wheel


def python_libdir() -> Path:
    """The directory holding libpython3.X.so.1.0, which the backend stub links against."""
    version = sysconfig.get_config_var("VERSION")
    soname = f"libpython{version}.so.1.0"  # the stub's DT_NEEDED
    libdir = Path(sysconfig.get_config_var("LIBDIR") or "")
    if not (libdir / soname).exists():
        raise LaunchError(
            f"{soname} not found in {libdir}: the Triton python stub needs a shared libpython "
            f"(Debian/Ubuntu: apt install libpython{version}; pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared)"
        )
    return libdir


def gpu_present() -> bool:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def torch_has_cuda() -> bool:
    """Whether this env's torch is a CUDA build (checked by its files; importing torch takes seconds)."""
    spec = importlib.util.find_spec("torch")
    return bool(spec and spec.origin and any(Path(spec.origin).parent.glob("lib/libtorch_cuda*.so")))


def resolve_device(choice: str) -> str:
    """'cpu' or 'gpu'. A KIND_GPU model with CPU-only torch would run on the CPU while claiming a GPU."""
    if choice == "cpu":
        return "cpu"
    if choice == "gpu" and not torch_has_cuda():
        raise LaunchError(f"--device gpu, but torch in {sys.prefix} is CPU-only; install a CUDA torch")
    if choice == "gpu" or (gpu_present() and torch_has_cuda()):
        return "gpu"
    if gpu_present():
        say("warning: a GPU is present but torch is CPU-only; serving on the CPU")
    return "cpu"


def prepare_backends(wheel: Wheel, work_dir: Path) -> Path:
    """backends/python/ = libtriton_python.so + utils + the stub for this Python (the server looks there)."""
    python_dir = work_dir / "backends" / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copy2(wheel.python_backend / name, python_dir / name)
    shutil.copy2(wheel.stub, python_dir / "triton_python_backend_stub")
    return python_dir.parent


def prepare_repository(repo: Path, work_dir: Path, device: str) -> Path:
    """CPU: the repo as is. GPU: a copy under the work dir with every KIND_CPU instance group as KIND_GPU."""
    if device == "cpu":
        return repo
    copy = work_dir / "model_repository"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(repo, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for config in copy.glob("*/config.pbtxt"):
        config.write_text(re.sub(r"\bKIND_CPU\b", "KIND_GPU", config.read_text()))
    return copy


def stale_shm_regions() -> list[Path] | None:
    """Python-backend shm regions mapped by no running Triton process; None when we cannot tell."""
    regions = set(SHM_DIR.glob(SHM_PREFIX + "*"))
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


def clean_shm() -> None:
    stale = stale_shm_regions()
    if stale is None:
        say(f"warning: cannot tell which {SHM_DIR}/{SHM_PREFIX}* are stale; leaving them")
        return
    for path in stale:
        try:
            path.unlink()
        except OSError as exc:
            say(f"warning: could not remove stale {path}: {exc}")
    if stale:
        say(f"removed {len(stale)} stale shm region(s) left by crashed Triton runs")


def server_env(wheel: Wheel, libdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(wheel.libs), str(libdir), env.get("LD_LIBRARY_PATH", "")) if p
    )
    # The stub ignores PYTHONPATH and finds its site-packages through the `python` on PATH.
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    env["HF_HUB_OFFLINE"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def server_command(args: argparse.Namespace, wheel: Wheel, backends: Path, repo: Path) -> list[str]:
    return [
        str(wheel.server),
        f"--model-repository={repo}",
        f"--backend-directory={backends}",
        "--model-control-mode=explicit",
        f"--load-model={args.model}",
        "--exit-on-error=true",
        "--strict-readiness=true",
        "--exit-timeout-secs=10",
        f"--http-address={args.host}",
        f"--http-port={args.http_port}",
        f"--grpc-address={args.host}",
        f"--grpc-port={args.grpc_port}",
        f"--metrics-address={args.host}",
        f"--metrics-port={args.metrics_port}",
        "--allow-gpu-metrics=false",
        "--pinned-memory-pool-byte-size=0",
        "--disable-auto-complete-config",
        f"--log-verbose={args.log_verbose}",
    ]


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the launcher dies, so a killed launcher leaves no orphan server."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _http_status(url: str, post: bool = False, timeout: float = 1.0) -> int:
    request = urllib.request.Request(url, data=b"" if post else None, method="POST" if post else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def stub_count(server_pid: int) -> int:
    """Live python-backend stubs (children named triton_python_b…) of the server process."""
    count = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm, rest = text[text.find("(") + 1 : text.rfind(")")], text[text.rfind(")") + 2 :].split()
        # A crashed stub stays a zombie (state Z): Triton does not reap it.
        count += comm.startswith(TRITON_COMMS[1]) and rest[0] not in "ZX" and int(rest[1]) == server_pid
    return count


def _watch(
    base: str, proc: subprocess.Popen[bytes], started: float, model: str, stop: threading.Event
) -> None:
    """Say when the server is ready; then reload the model if its stub dies (Triton only reports
    'Stub process is not healthy' for every request and keeps the model READY otherwise)."""
    warn_at = started + READY_WARN_AFTER_S
    while _http_status(f"{base}/v2/health/ready") != 200:
        if proc.poll() is not None:
            return
        if time.monotonic() > warn_at:
            say(f"warning: not ready after {READY_WARN_AFTER_S:.0f} s (missing libraries? see log above)")
            warn_at = float("inf")
        time.sleep(0.25)
    say(f"model {model} ready in {time.monotonic() - started:.1f} s")
    stubs = stub_count(proc.pid)
    while not stop.wait(WATCH_INTERVAL_S) and proc.poll() is None:
        if stub_count(proc.pid) >= stubs or _http_status(f"{base}/v2/models/{model}/ready") != 200:
            continue  # healthy, or loading/unloaded on purpose (explicit model control)
        say(f"python backend stub of {model} died; reloading the model")
        reload_started = time.monotonic()
        _http_status(f"{base}/v2/repository/models/{model}/unload", post=True, timeout=60)
        if _http_status(f"{base}/v2/repository/models/{model}/load", post=True, timeout=300) == 200:
            say(f"model {model} reloaded in {time.monotonic() - reload_started:.1f} s")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_numpy()
        wheel = find_wheel()
        libdir = python_libdir()
        device = resolve_device(args.device)
        repo = Path(args.model_repository).resolve()
        if not (repo / args.model / "config.pbtxt").is_file():
            raise LaunchError(f"no {args.model}/config.pbtxt in model repository {repo}")
        work_dir = Path(args.work_dir).resolve()
        backends = prepare_backends(wheel, work_dir)
        repo = prepare_repository(repo, work_dir, device)
    except (LaunchError, OSError) as exc:
        say(f"error: {exc}")
        return 2
    clean_shm()

    say(f"starting tritonserver ({device}): grpc {args.host}:{args.grpc_port}, http :{args.http_port}")
    say(f"loading model {args.model} from {repo}")
    started = time.monotonic()
    proc = subprocess.Popen(
        server_command(args, wheel, backends, repo),
        env=server_env(wheel, libdir),
        start_new_session=True,  # Ctrl-C reaches it once, through us, not twice
        preexec_fn=_die_with_parent,  # no threads exist yet at fork time
    )

    stopping = threading.Event()  # no model reloads while the server shuts down

    def forward(signum: int, _frame: object) -> None:
        stopping.set()
        if proc.poll() is None:
            proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    ready_host = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
    threading.Thread(
        target=_watch,
        args=(f"http://{ready_host}:{args.http_port}", proc, started, args.model, stopping),
        daemon=True,
    ).start()

    code = proc.wait()
    code = 128 - code if code < 0 else code  # killed by signal N -> 128 + N, as shells report it
    say(f"tritonserver exited with code {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
