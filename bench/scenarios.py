"""The scenarios: what each one starts (its setup), what it sends, at which concurrencies.

Setups that share processes (Postgres, Redis, the tiny upstream, the real sidecars, Triton)
start them once through `Shared`; what belongs to one setup only (its Envoy, a baseline
gateway) lives in that setup's own Launcher and stops when its cells are done.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from bench import envoy_configs
from bench import keys as bench_keys
from bench.load.spec import RequestSpec
from bench.services import SIGNING_MASTER_KEY, Launcher, clusters_healthy, http_ok
from tests.procs import free_port

EMBED_TEXT = "The quick brown fox jumps over the lazy dog."
EMBED_BODY = json.dumps({"input_text": EMBED_TEXT}).encode()
# KServe v2 JSON infer request; binary outputs, as tritonclient would ask for them.
TRITON_BODY = json.dumps(
    {
        "inputs": [{"name": "TEXT", "shape": [1, 1], "datatype": "BYTES", "data": [EMBED_TEXT]}],
        "outputs": [{"name": "EMBEDDING", "parameters": {"binary_data": True}}, {"name": "TOKENS"}],
    }
).encode()
TRITON_MODEL = "embedder"
# The same comparison with 16 texts per request (OpenAI /v1/embeddings on the gateway side):
# what a client embedding documents sends, and where the proxy's per-request cost is shared.
BATCH_TEXTS = 16
BATCH_INPUT = [f"{EMBED_TEXT} ({i})" for i in range(BATCH_TEXTS)]
EMBEDDINGS_BATCH_BODY = json.dumps({"input": BATCH_INPUT, "model": "all-MiniLM-L6-v2"}).encode()
TRITON_BATCH_BODY = json.dumps(
    {
        "inputs": [{"name": "TEXT", "shape": [BATCH_TEXTS, 1], "datatype": "BYTES", "data": BATCH_INPUT}],
        "outputs": [{"name": "EMBEDDING", "parameters": {"binary_data": True}}, {"name": "TOKENS"}],
    }
).encode()


@dataclass(frozen=True)
class Target:
    """Where a setup's load goes; `admin_url` when it is an Envoy whose counters we read."""

    url: str
    admin_url: str | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    group: str  # proxy | scaling | embeddings
    setup: str
    concurrencies: tuple[int, ...]
    keys: int = 1  # distinct API keys, cycled by the load generator
    floor: str = "envoy"  # ratios are taken against this scenario at the same concurrency
    calls: tuple[str, ...] = ()  # sidecar filters Envoy must consult on every request
    path: str = "/v1/embed"
    body: bytes = EMBED_BODY
    texts: int = 1  # texts per request (embeddings): texts/s = rps × texts
    key_kind: str = ""  # "signed" or "allowlisted": the one special key of bench.keys instead

    def spec(self, keys: list[str]) -> RequestSpec:
        return RequestSpec("POST", self.path, self.body, tuple(keys[: self.keys]))


C3 = (1, 16, 64)
SIGNED_PER_CELL = 60_000
BOTH = ("ext_authz", "ratelimit")
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("envoy", "Envoy alone (floor)", "proxy", "envoy", C3),
    Scenario("local-ratelimit", "Envoy local_ratelimit", "proxy", "local-ratelimit", C3),
    Scenario("noop-authz", "do-nothing ext_authz", "proxy", "noop-authz", (16,), calls=("ext_authz",)),
    Scenario("noop-both", "do-nothing ext_authz+ratelimit", "proxy", "noop-both", C3, calls=BOTH),
    Scenario("standard", "gateway (authz+ratelimit)", "proxy", "standard", C3, calls=BOTH),
    Scenario("fused", "gateway, fused limits (1 call)", "proxy", "fused", (1, 16), calls=("ext_authz",)),
    Scenario("fastapi-memory", "FastAPI, memory windows", "proxy", "fastapi-memory", C3),
    Scenario("fastapi-redis", "FastAPI, Redis windows", "proxy", "fastapi-redis", C3),
    Scenario("standard-2proc", "gateway, 2 procs/sidecar", "scaling", "standard-2proc", (16,), calls=BOTH),
    Scenario("standard-tls", "gateway over TLS (keep-alive)", "scaling", "standard-tls", (16,), calls=BOTH),
    Scenario("standard-signed", "gateway, signed requests", "scaling", "standard", (16,), calls=BOTH,
             key_kind="signed"),
    Scenario("standard-allowlisted", "gateway, key with an IP allowlist", "scaling", "standard", (16,),
             calls=BOTH, key_kind="allowlisted"),
    Scenario("standard-metered", "gateway, token limits + usage records", "scaling", "standard-metered",
             (16,), calls=BOTH, key_kind="metered"),
    Scenario("standard-metered-batched", "gateway, token limits charged in batches + usage records",
             "scaling", "standard-metered-batched", (16,), calls=BOTH, key_kind="metered"),
    Scenario("standard-1k-keys", "gateway, 1k keys", "scaling", "standard", (16,), 1_000, calls=BOTH),
    Scenario("standard-100k-keys", "gateway, 100k keys", "scaling", "standard", (16,), 100_000, calls=BOTH),
    Scenario(
        "triton-direct", "Triton direct (HTTP)", "embeddings", "triton-direct", (1, 8, 32), keys=0,
        floor="triton-direct", path=f"/v2/models/{TRITON_MODEL}/infer", body=TRITON_BODY,
    ),
    Scenario(
        "gateway-embed", "through the gateway", "embeddings", "gateway-embed", (1, 8, 32),
        floor="triton-direct", calls=BOTH,
    ),
    Scenario(
        "triton-direct-16", "Triton direct, 16 texts/request", "embeddings", "triton-direct", (8,), keys=0,
        floor="triton-direct-16", path=f"/v2/models/{TRITON_MODEL}/infer", body=TRITON_BATCH_BODY,
        texts=BATCH_TEXTS,
    ),
    Scenario(
        "gateway-embed-16", "gateway, 16 texts/request", "embeddings", "gateway-embed", (8,),
        floor="triton-direct-16", calls=BOTH, path="/v1/embeddings", body=EMBEDDINGS_BATCH_BODY,
        texts=BATCH_TEXTS,
    ),
)  # fmt: skip
BY_NAME = {s.name: s for s in SCENARIOS}


class Shared:
    """Processes several setups use, started on first use and stopped at the very end."""

    def __init__(self, launcher: Launcher, keys_needed: int) -> None:
        self.launcher = launcher
        self.keys_needed = max(1, keys_needed)
        self._authz: list[int] = []
        self._ratelimit: list[int] = []

    @cached_property
    def upstream_port(self) -> int:
        return self.launcher.tiny_upstream()

    @cached_property
    def database_url(self) -> str:
        return self.launcher.postgres()

    @cached_property
    def redis_url(self) -> str:
        return self.launcher.redis()

    @cached_property
    def keys(self) -> list[str]:
        """Plaintext keys for the load generator (the floors need no store, only the same bytes)."""
        return bench_keys.generate(self.keys_needed)

    @cached_property
    def stored_keys(self) -> list[str]:
        bench_keys.store_keys(self.database_url, self.keys)
        return self.keys

    @cached_property
    def special_keys(self) -> tuple[str, str, str, str]:
        """(signing key, its secret, key allowlisted for 127.0.0.1, key with token limits) in the store."""
        return bench_keys.store_special_keys(self.database_url, SIGNING_MASTER_KEY)

    def spec(self, scenario: Scenario, keys: list[str]) -> RequestSpec:
        """What `scenario` sends: its share of `keys`, or a run's worth of signed requests."""
        if scenario.key_kind == "signed":
            signer, secret = self.special_keys[:2]
            # Far more than a cell sends (~1,500 rps × (cell + warm-up)): each signature works once.
            entries = bench_keys.signed_requests(secret, scenario.path, scenario.body, SIGNED_PER_CELL)
            return RequestSpec("POST", scenario.path, scenario.body, (signer,), signed=entries)
        if scenario.key_kind in ("allowlisted", "metered"):
            key = self.special_keys[2 if scenario.key_kind == "allowlisted" else 3]
            return RequestSpec("POST", scenario.path, scenario.body, (key,))
        return scenario.spec(keys)

    @cached_property
    def keys_file(self) -> Path:
        path = self.launcher.run_dir / "keys.txt"
        path.write_text("\n".join(self.keys) + "\n")
        return path

    def sidecars(self, processes: int) -> tuple[list[int], list[int]]:
        """Ports of `processes` real authz and ratelimit services each (started as needed)."""
        _ = self.stored_keys  # before authz starts: bulk inserts would flood its NOTIFY listener
        _ = self.special_keys
        while len(self._authz) < processes:
            name = f"authz-{len(self._authz)}"
            self._authz.append(self.launcher.authz(name, self.database_url, redis_url=self.redis_url))
            self._ratelimit.append(
                self.launcher.ratelimit(f"ratelimit-{len(self._ratelimit)}", self.redis_url)
            )
        return self._authz[:processes], self._ratelimit[:processes]

    @cached_property
    def fused_authz(self) -> int:
        """Port of a real authz service in fused mode (keys in Postgres, windows in Redis)."""
        _ = self.stored_keys
        return self.launcher.authz("authz-fused", self.database_url, fused_redis_url=self.redis_url)

    @cached_property
    def triton(self):
        return self.launcher.triton()

    @cached_property
    def adapter_port(self) -> int:
        return self.launcher.adapter(self.triton)


Setup = Callable[[Shared, Launcher], Target]


def _simple_envoy(build: Callable[[int, int, int], dict]) -> Setup:
    def setup(shared: Shared, own: Launcher) -> Target:
        port, admin = free_port(), free_port()
        config = envoy_configs.write(build(port, admin, shared.upstream_port), own.run_dir / "envoy.yaml")
        admin_url = f"http://127.0.0.1:{admin}"
        own.envoy("envoy", config, lambda: http_ok(f"{admin_url}/ready"))
        return Target(f"http://127.0.0.1:{port}", admin_url)

    return setup


Ports = Callable[[Shared, Launcher], list[int]]


def _gateway(
    authz: Ports,
    ratelimit: Ports,
    upstream: Callable[[Shared], int],
    fused: bool = False,
    tls: bool = False,
    metered: bool = False,
    batched_tokens: bool = False,
) -> Setup:
    """The project's Envoy template; `fused`: rendered without the ratelimit filter (no ratelimit
    ports); `tls`: HTTPS on the public listener with a self-signed certificate (wrk does not verify);
    `metered`: Envoy writes the usage log and a usage service stores it in Postgres;
    `batched_tokens`: that service also charges the tokens (GATEWAY_TOKEN_CHARGE=usage)."""

    def setup(shared: Shared, own: Launcher) -> Target:
        port, admin = free_port(), free_port()
        authz_ports, ratelimit_ports = authz(shared, own), ratelimit(shared, own)
        path = own.run_dir / "envoy.yaml"
        certificate = self_signed(own.run_dir) if tls else None
        usage_log = own.run_dir / "usage.jsonl" if metered else None
        if usage_log is not None:
            own.usage_writer(shared.database_url, usage_log, shared.redis_url if batched_tokens else "")
        charge = "usage" if batched_tokens else "envoy"
        envoy_configs.gateway(
            path,
            port,
            admin,
            upstream(shared),
            authz_ports,
            ratelimit_ports,
            fused,
            certificate,
            usage_log,
            charge,
        )
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        admin_url = f"http://127.0.0.1:{admin}"
        sidecars = {"authz"} if fused else {"authz", "ratelimit"}

        def ready() -> bool:
            healthy = clusters_healthy(admin_url, {*sidecars, "inference_adapter"})
            # Over TLS the public /ready would need the self-signed certificate: Envoy's admin says.
            return healthy and http_ok(f"{admin_url}/ready" if tls else f"{url}/ready")

        own.envoy("envoy", path, ready)
        return Target(url, admin_url)

    return setup


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 and its key (openssl CLI)."""
    cert, key = folder / "tls-cert.pem", folder / "tls-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", str(key),
         "-out", str(cert), "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _fastapi(store: str) -> Setup:
    def setup(shared: Shared, own: Launcher) -> Target:
        redis_url = shared.redis_url if store == "redis" else ""
        port = own.fastapi_gateway(store, shared.upstream_port, shared.keys_file, redis_url)
        return Target(f"http://127.0.0.1:{port}")

    return setup


def _triton_direct(shared: Shared, own: Launcher) -> Target:
    return Target(f"http://127.0.0.1:{shared.triton.http_port}")


def _upstream(shared: Shared) -> int:
    return shared.upstream_port


def _adapter(shared: Shared) -> int:
    return shared.adapter_port


def _noop(kind: str, key_id: str = "key_bench") -> Ports:
    return lambda shared, own: [own.noop_sidecar(kind, key_id)]


def _real(processes: int, which: int) -> Ports:
    return lambda shared, own: shared.sidecars(processes)[which]


def _fused_authz(shared: Shared, own: Launcher) -> list[int]:
    return [shared.fused_authz]


def _no_ports(shared: Shared, own: Launcher) -> list[int]:
    return []


SETUPS: dict[str, Setup] = {
    "envoy": _simple_envoy(envoy_configs.plain_router),
    "local-ratelimit": _simple_envoy(envoy_configs.local_ratelimit),
    "noop-authz": _gateway(_noop("authz", key_id=""), _noop("ratelimit"), _upstream),
    "noop-both": _gateway(_noop("authz"), _noop("ratelimit"), _upstream),
    "standard": _gateway(_real(1, 0), _real(1, 1), _upstream),
    "standard-2proc": _gateway(_real(2, 0), _real(2, 1), _upstream),
    "standard-tls": _gateway(_real(1, 0), _real(1, 1), _upstream, tls=True),
    "standard-metered": _gateway(_real(1, 0), _real(1, 1), _upstream, metered=True),
    "standard-metered-batched": _gateway(
        _real(1, 0), _real(1, 1), _upstream, metered=True, batched_tokens=True
    ),
    "fused": _gateway(_fused_authz, _no_ports, _upstream, fused=True),
    "fastapi-memory": _fastapi("memory"),
    "fastapi-redis": _fastapi("redis"),
    "triton-direct": _triton_direct,
    "gateway-embed": _gateway(_real(1, 0), _real(1, 1), _adapter),
}
