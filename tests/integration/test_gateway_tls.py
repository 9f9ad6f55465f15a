"""HTTPS at Envoy (GATEWAY_TLS_CERT / GATEWAY_TLS_KEY), through a real Envoy and real TLS clients:
TLS 1.2+ only, ALPN, HSTS, the redirect listener, renewal without a restart, clear start errors."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stack import envoy as envoy_launcher
from tests.envoy_fixtures import EnvoyUnderTest, dead_upstreams, launcher_error, spawn_envoy
from tests.procs import ROOT, free_port


def make_certificate(folder: Path, name: str, common_name: str) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1 and its key (openssl CLI)."""
    cert, key = folder / f"{name}.pem", folder / f"{name}-key.pem"
    names = "subjectAltName=DNS:localhost,IP:127.0.0.1"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", str(key),
         "-out", str(cert), "-subj", f"/CN={common_name}", "-addext", names],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def tls(
    run_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[EnvoyUnderTest, Path, int]]:
    """Envoy serving HTTPS with a certificate in its own folder, and an HTTP→HTTPS redirect port."""
    folder = tmp_path_factory.mktemp("tls")
    live = folder / "live"
    live.mkdir()
    cert, key = make_certificate(folder, "first", "first.gateway.test")
    os.replace(cert, live / "cert.pem")
    os.replace(key, live / "key.pem")
    redirect_port = free_port()
    values = {**dead_upstreams(), "tls_cert": str(live / "cert.pem"), "tls_key": str(live / "key.pem"),
              "http_redirect_port": str(redirect_port)}  # fmt: skip
    envoy = spawn_envoy(run_dir, "edge-tls", values, wait_ready=False)
    yield envoy, live, redirect_port
    envoy.proc.stop()


def port_of(envoy: EnvoyUnderTest) -> int:
    return int(envoy.url.rsplit(":", 1)[1])


def handshake(port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return context.wrap_socket(raw, server_hostname="localhost")


def client_context(cafile: Path, minimum: ssl.TLSVersion, maximum: ssl.TLSVersion) -> ssl.SSLContext:
    """A client that speaks exactly these versions (TLS 1.0/1.1 are deprecated in Python: that is
    the point of offering them here)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer old versions at all
    context.minimum_version, context.maximum_version = minimum, maximum
    return context


def test_https_answers_with_hsts_and_offers_h2(tls) -> None:
    envoy, live, _ = tls
    port = port_of(envoy)
    with httpx.Client(verify=ssl.create_default_context(cafile=str(live / "cert.pem"))) as http:
        response = http.post(f"https://localhost:{port}/v1/embed", json={"input_text": "x"})
    assert response.status_code == 503 and response.json()["code"] == "SERVICE_UNAVAILABLE"  # authz is down
    assert response.headers["strict-transport-security"] == "max-age=31536000"
    context = client_context(live / "cert.pem", ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with handshake(port, context) as conn:
        assert conn.selected_alpn_protocol() == "h2"


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_1_2_and_1_3_are_accepted_and_1_0_and_1_1_refused(tls) -> None:
    envoy, live, _ = tls
    port = port_of(envoy)
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        with handshake(port, client_context(live / "cert.pem", version, version)) as conn:
            assert conn.version() == version.name.replace("_", ".")  # TLSv1.2, TLSv1.3
    for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        with pytest.raises(ssl.SSLError) as refused:
            handshake(port, client_context(live / "cert.pem", version, version)).close()
        assert (
            "PROTOCOL_VERSION" in str(refused.value).upper()
            or "UNSUPPORTED_PROTOCOL" in str(refused.value).upper()
        )


def test_plain_http_to_the_tls_port_fails_cleanly(tls) -> None:
    envoy, _, _ = tls
    started = time.monotonic()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port_of(envoy)}/ready", timeout=10)
    assert time.monotonic() - started < 5  # closed at once, no hang


def test_the_http_port_only_redirects_to_https(tls) -> None:
    envoy, _, redirect_port = tls
    response = httpx.get(f"http://127.0.0.1:{redirect_port}/v1/embed?x=1", follow_redirects=False)
    assert response.status_code == 301
    assert response.headers["location"] == f"https://127.0.0.1:{port_of(envoy)}/v1/embed?x=1"


def test_a_renewed_certificate_is_served_without_a_restart(tls, tmp_path: Path) -> None:
    envoy, live, _ = tls
    cert, key = make_certificate(tmp_path, "renewed", "renewed.gateway.test")
    os.replace(key, live / "key.pem")  # renewals arrive by rename, as certbot and Kubernetes do it
    os.replace(cert, live / "cert.pem")
    wanted = ssl.PEM_cert_to_DER_cert((live / "cert.pem").read_text())
    context = client_context(live / "cert.pem", ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # look at whichever is served
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with handshake(port_of(envoy), context) as conn:
            if conn.getpeercert(binary_form=True) == wanted:
                break
        time.sleep(0.3)
    else:
        raise AssertionError("Envoy still serves the old certificate")
    assert envoy.proc.popen.poll() is None  # same process


def test_unusable_certificate_settings_stop_the_launcher_with_one_line(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path, "one", "one.test")
    other_cert, other_key = make_certificate(tmp_path, "two", "two.test")
    missing = launcher_error(tmp_path, GATEWAY_TLS_CERT=str(tmp_path / "nope.pem"), GATEWAY_TLS_KEY=str(key))
    assert missing.startswith(f"envoy: GATEWAY_TLS_CERT='{tmp_path / 'nope.pem'}' cannot be read")
    mismatched = launcher_error(tmp_path, GATEWAY_TLS_CERT=str(cert), GATEWAY_TLS_KEY=str(other_key))
    assert "GATEWAY_TLS_CERT=" in mismatched and "are not a PEM certificate and its private key" in mismatched
    alone = launcher_error(tmp_path, GATEWAY_TLS_CERT=str(other_cert))
    assert alone == "envoy: GATEWAY_TLS_CERT and GATEWAY_TLS_KEY go together: set both or neither"


def test_a_prerendered_tls_config_gets_its_certificate_file_at_start(tmp_path: Path) -> None:
    """Kubernetes runs a bootstrap rendered ahead of time (`stack.envoy --config`): the launcher
    writes the SDS file that config names from GATEWAY_TLS_CERT/KEY, or stops with one line."""
    cert, key = make_certificate(tmp_path, "k8s", "k8s.test")
    sds = tmp_path / "sds" / "tls-sds.json"
    values = {**dead_upstreams(), "tls_cert": "/etc/tls/tls.crt", "tls_key": "/etc/tls/tls.key",
              "tls_sds_path": str(sds)}  # fmt: skip
    config = tmp_path / "prerendered.yaml"
    config.write_text(envoy_launcher.renderer().render(envoy_launcher.renderer().values_from_env(values)))
    assert envoy_launcher.sds_paths(config) == [str(sds)] and not sds.exists()
    envoy_launcher.write_prerendered_sds(config, str(cert), str(key))
    assert str(cert.resolve()) in sds.read_text()
    envoy_launcher.validate(config)
    result = subprocess.run(
        [sys.executable, "-m", "stack.envoy", "--config", str(config)],
        env={"PATH": os.environ["PATH"]}, capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.strip() == (
        f"envoy: {config} serves TLS: set GATEWAY_TLS_CERT and GATEWAY_TLS_KEY (PEM files)"
    )
