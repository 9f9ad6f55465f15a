"""CPU or GPU: a GPU instance group only when a GPU is present and this environment's torch can use it."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from inference.triton import LaunchError, say

CHOICES = ("auto", "cpu", "gpu")


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
    """'cpu' or 'gpu'. A KIND_GPU model with CPU-only torch would refuse to load (model.py checks)."""
    if choice == "cpu":
        return "cpu"
    if choice == "gpu" and not torch_has_cuda():
        raise LaunchError(f"--device gpu, but torch in {sys.prefix} is CPU-only; install a CUDA torch")
    if choice == "gpu" or (gpu_present() and torch_has_cuda()):
        return "gpu"
    if gpu_present():
        say("warning: a GPU is present but torch is CPU-only; serving on the CPU")
    return "cpu"
