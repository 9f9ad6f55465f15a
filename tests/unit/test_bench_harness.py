"""The benchmark harness's pure parts: result parsing, percentiles, targets, Envoy configs, baselines."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from authz_service import signing
from bench import envoy_configs, profile, report, scenarios, targets
from bench import keys as bench_keys
from bench.baselines.sliding_log import MemoryLog
from bench.load import pyload, wrk
from bench.load.spec import LoadResult, RequestSpec, percentiles
from bench.runner import Cell
from stack import envoy as envoy_launcher

ROOT = Path(__file__).resolve().parents[2]
WRK_LINE = (
    'BENCH_RESULT {"requests":1000,"duration_us":2000000,"connect":1,"read":2,"write":0,"status":3,'
    '"timeout":4,"mean_us":812.5,"max_us":9000,"percentiles":[[50,700],[99,4200],[99.9,8000]]}'
)


def result(rps: float, p50_ms: float = 1.0, p99_ms: float = 2.0) -> LoadResult:
    return LoadResult("wrk", 16, int(rps * 10), 10.0, 0, 0, {50.0: p50_ms * 1000, 99.0: p99_ms * 1000})


def test_wrk_result_line_is_parsed_into_rps_errors_and_percentiles() -> None:
    parsed = wrk.parse("Running 2s test\n" + WRK_LINE + "\n", concurrency=16)
    assert parsed.rps == 500
    assert (parsed.socket_errors, parsed.bad_status, parsed.failures) == (7, 3, 10)
    assert (parsed.p50_ms, parsed.p99_ms, parsed.percentile_ms(99.9)) == (0.7, 4.2, 8.0)


def test_wrk_output_without_a_result_line_is_an_error() -> None:
    with pytest.raises(wrk.WrkError, match="no result line"):
        wrk.parse("unable to connect to 127.0.0.1:1 Connection refused\n", 1)


def test_wrk_command_passes_the_request_shape_to_the_lua_script() -> None:
    if wrk.wrk_binary() is None:
        with pytest.raises(wrk.WrkError, match="apt-get install -y wrk"):
            wrk.command("http://h:1", RequestSpec(), 1, 1, ("-", "-"))
        return
    spec = RequestSpec("POST", "/v1/embed", b"{}", ("k",))
    args = wrk.command("http://127.0.0.1:8000", spec, 64, 5, ("/tmp/body", "/tmp/keys"))
    assert args[args.index("-c") + 1] == "64" and args[args.index("-d") + 1] == "5s"
    assert args[-6:] == ["--", "POST", "/v1/embed", "/tmp/body", "/tmp/keys", "application/json"]


def test_percentiles_use_nearest_rank() -> None:
    samples = list(range(1, 101))  # 1..100
    assert percentiles(samples, (1, 50, 99, 99.9)) == {1: 1, 50: 50, 99: 99, 99.9: 100}
    assert percentiles([], (50,)) == {}


def test_targets_pass_miss_and_na() -> None:
    results = {
        ("standard", 16): result(2000),
        ("noop-both", 16): result(2500),
        ("fastapi-redis", 16): result(400),
        ("standard", 1): result(500, p50_ms=1.5),
        ("envoy", 1): result(5000, p50_ms=0.4),
    }
    verdicts = {v.name: v for v in targets.evaluate(results)}
    assert verdicts["standard vs do-nothing floor"].status == "MISS"  # 0.8x
    assert verdicts["vs FastAPI+Redis"].status == "PASS"  # 5x
    assert verdicts["added p50 at c=1"].measured == pytest.approx(1.1)
    assert verdicts["added p50 at c=1"].status == "PASS"
    assert verdicts["p99 at c=64"].status == "n/a"


def test_python_load_generator_reads_chunked_and_sized_bodies() -> None:
    async def statuses() -> list[int]:
        reader = asyncio.StreamReader()
        reader.feed_data(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
        reader.feed_data(b"HTTP/1.1 429 Too Many\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        reader.feed_data(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        return [await pyload.read_response(reader) for _ in range(3)]

    assert asyncio.run(statuses()) == [200, 429, 204]


def test_python_load_generator_sends_one_request_per_key() -> None:
    spec = RequestSpec("POST", "/v1/embed", b'{"a":1}', ("sk_test_one", "sk_test_two"))
    built = pyload.prebuilt(spec, "127.0.0.1:8000")
    assert len(built) == 2
    assert built[1].startswith(b"POST /v1/embed HTTP/1.1\r\n")
    assert b"Authorization: Bearer sk_test_two\r\n" in built[1]
    assert b"Content-Length: 7\r\n" in built[1] and built[1].endswith(b'\r\n\r\n{"a":1}')


def test_seed_style_memory_log_refuses_over_the_minute_limit_without_recording() -> None:
    log = MemoryLog({"minute": 2, "hour": 10})

    async def decisions() -> list[str | None]:
        return [await log.allow("k") for _ in range(3)] + [await log.allow("other")]

    assert asyncio.run(decisions()) == [None, None, "minute", None]
    assert len(log._logs["k"]["hour"]) == 2


@pytest.mark.parametrize(
    "config",
    [
        envoy_configs.plain_router(18000, 19901, 18001),
        envoy_configs.local_ratelimit(18000, 19901, 18001),
        envoy_configs.tiny_upstream(18001),
    ],
    ids=["floor", "local_ratelimit", "tiny_upstream"],
)
def test_hand_written_envoy_configs_validate(config: dict, tmp_path: Path) -> None:
    # validate() raises SystemExit with Envoy's own message when the config is invalid.
    envoy_launcher.validate(envoy_configs.write(config, tmp_path / "envoy.yaml"))


def test_gateway_config_lists_every_sidecar_process_as_an_endpoint(tmp_path: Path) -> None:
    path = envoy_configs.gateway(tmp_path / "gw.yaml", 18000, 19901, 18001, [19001, 19002], [19011, 19012])
    clusters = {c["name"]: c for c in yaml.safe_load(path.read_text())["static_resources"]["clusters"]}
    ports = [
        e["endpoint"]["address"]["socket_address"]["port_value"]
        for e in clusters["authz"]["load_assignment"]["endpoints"][0]["lb_endpoints"]
    ]
    assert ports == [19001, 19002]
    envoy_launcher.validate(path)


def test_cli_refuses_an_unknown_scenario_with_one_line_and_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--scenarios", "envoy,nope"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "unknown scenario(s): nope" in done.stderr
    assert "Traceback" not in done.stderr


def test_without_wrk_the_command_says_how_to_install_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--scenarios", "envoy"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={"PATH": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 1
    assert "apt-get install -y wrk" in done.stderr and "--load-tool python" in done.stderr
    assert "Traceback" not in done.stderr


def test_profile_charges_samples_to_layers_from_the_innermost_frame() -> None:
    collapsed = "\n".join(
        [
            "process 1;<module> (runpy.py:1);Handle._run (asyncio/events.py:80) 30",
            "process 1;Thread.run (threading.py:982) 20",
            "process 1;Check (authz_service/service.py:52);hash_key (authz_service/keys/__init__.py:65) 10",
            "process 1;hit (ratelimit_service/store.py:9);pack_command (redis/connection.py:1) 5",
        ]
    )
    layers, leaves, total = profile.summarize(profile.parse_collapsed(collapsed))
    assert total == 65
    assert layers["event-loop callbacks into C (grpc.aio's Cython)"] == 30
    assert layers["C threads (grpc core polling/transport)"] == 20
    assert layers["service code"] == 10 and layers["redis client"] == 5
    assert leaves.most_common(1) == [("Handle._run (asyncio/events.py:80)", 30)]


def test_rows_carry_ratios_to_the_floor_of_the_same_run_and_feed_the_headline() -> None:
    floor = Cell(scenarios.BY_NAME["envoy"], 16, result(20_000, p50_ms=0.6))
    gateway = Cell(scenarios.BY_NAME["standard"], 16, result(2_000, p50_ms=1.5))
    broken = Cell(scenarios.BY_NAME["fastapi-redis"], 16, error="setup failed: boom")
    rows = [report.row(c, [floor, gateway, broken]) for c in (floor, gateway, broken)]
    assert rows[1]["rps_vs_floor"] == 0.1 and rows[1]["p50_added_ms"] == pytest.approx(0.9)
    assert rows[2]["error"] == "setup failed: boom" and "rps" not in rows[2]
    headline = report.headline_table(rows)
    assert "| gateway (authz+ratelimit) | 2,000 | 0.10 | 1.50 | 2.00 |" in headline
    assert "FastAPI" not in headline  # a failed cell has no figures to show


def test_do_nothing_replies_carry_the_same_headers_as_the_real_services() -> None:
    """The floor must make Envoy add what the product makes it add, or the ratios flatter the product."""
    from bench.noop_sidecars import NoopRateLimit, ok_check
    from ratelimit_service.config import DEFAULT_CONFIG, load_config
    from ratelimit_service.limiter import Limiter
    from ratelimit_service.service import RateLimitService
    from ratelimit_service.store import MemoryStore
    from tests.ratelimit_fixtures import rl_request

    service = RateLimitService(Limiter(load_config(DEFAULT_CONFIG), MemoryStore()))
    entries = [("route", "v1"), ("plan", "free"), ("api_key", "key_0123456789abcdef")]
    real = asyncio.run(service.ShouldRateLimit(rl_request("gateway", entries, hits=1), None))
    names = [h.key for h in real.response_headers_to_add]
    assert names and names == [h.key for h in NoopRateLimit.reply.response_headers_to_add]
    alone = ok_check("").ok_response.response_headers_to_add
    assert [h.header.key for h in alone] == names  # fused mode's OK adds these to the response
    assert not ok_check("key_bench").ok_response.response_headers_to_add  # standard authz adds none


def test_repeated_cells_report_the_median_round_and_every_rounds_rps() -> None:
    standard = scenarios.BY_NAME["standard"]
    envoy = scenarios.BY_NAME["envoy"]
    cells = [
        Cell(standard, 16, result(900), round=1),
        Cell(envoy, 16, result(8000), round=1),
        Cell(standard, 16, result(1500), round=2),
        Cell(standard, 16, None, error="boom", round=3),
        Cell(standard, 16, result(1200), round=4),
    ]
    from bench.runner import median_cells

    merged = median_cells(cells)
    assert [(c.scenario.name, c.round) for c in merged] == [("standard", 4), ("envoy", 1)]
    assert merged[0].round_rps == [900, 1500, 1200]
    assert merged[0].warnings == ["1 of 4 rounds failed"]
    assert merged[1].round_rps == []  # measured once: nothing to report


def test_a_paired_target_is_the_median_of_its_rounds_and_skips_failed_ones() -> None:
    floor_target = next(t for t in targets.TARGETS if t.name == "standard vs do-nothing floor")
    floor = result(1000)
    rounds = [(result(880), floor), (None, floor), (result(950), floor), (result(700), floor)]
    verdict = targets.from_rounds(floor_target, rounds)
    assert verdict.rounds == pytest.approx((0.88, 0.95, 0.70)) and verdict.measured == pytest.approx(0.88)
    assert verdict.status == "MISS"
    p50 = next(t for t in targets.TARGETS if t.metric == "p50")
    added = targets.from_rounds(p50, [(result(1, p50_ms=2.0), result(1, p50_ms=0.8))])
    assert added.measured == pytest.approx(1.2) and added.status == "PASS"
    assert "| each round |" in report.targets_table([verdict, added])
    assert targets.from_rounds(floor_target, [(None, None)]).status == "n/a"


def test_cpu_targets_are_shares_of_tritons_cpu_in_the_same_cell() -> None:
    from bench.targets import cpu_verdicts

    cell = {
        "envoy": 600.0,
        "authz-0": 450.0,
        "ratelimit-0": 480.0,
        "redis": 80.0,
        "adapter": 400.0,
        "triton": 5000.0,
    }
    adapter, gateway = cpu_verdicts({("gateway-embed", 32): cell})
    assert adapter.measured == pytest.approx(0.08) and adapter.status == "PASS"
    assert gateway.measured == pytest.approx(2010 / 5000) and gateway.status == "MISS"
    assert all(v.measured is None and v.status == "n/a" for v in cpu_verdicts({}))


def test_signed_requests_are_distinct_and_verifiable() -> None:
    secret = signing.new_secret()
    first = bench_keys.signed_requests(secret, "/v1/embed", b"{}", 3)
    again = bench_keys.signed_requests(secret, "/v1/embed", b"{}", 2)
    paths = [path for path, _, _ in (*first, *again)]
    assert len(set(paths)) == 5  # never the same signature twice in a run (a replay)
    for path, stamp, sent in first:
        headers = {"x-signature-timestamp": stamp, "x-signature": sent}
        assert signing.check(secret, headers, "POST", path, b"{}", float(stamp)) is None
    spec = RequestSpec("POST", "/v1/embed", b"{}", ("sk_test_k",), signed=first)
    assert spec.key_lines()[0] == "\t".join(("sk_test_k", *first[0]))
    raw = pyload.prebuilt(spec, "127.0.0.1")
    assert len(raw) == 3 and raw[0].startswith(f"POST {first[0][0]} HTTP/1.1".encode())
    assert f"X-Signature: {first[0][2]}".encode() in raw[0]
