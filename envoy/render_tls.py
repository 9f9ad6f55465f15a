"""HTTPS on the public listener: checks of the certificate files, their SDS file and the bootstrap
changes (TLS 1.2+, ALPN, HSTS, the redirect listener). Used by render.py (a sibling file: envoy/
is not a package)."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

TLS_SECRET = "gateway_certificate"
TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3"
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def check_tls_files(cert: str, key: str) -> None:
    """Readable PEM files that are a certificate and its private key, or ValueError naming the variable."""
    if not cert or not key:
        raise ValueError("GATEWAY_TLS_CERT and GATEWAY_TLS_KEY go together: set both or neither")
    for variable, path in (("GATEWAY_TLS_CERT", cert), ("GATEWAY_TLS_KEY", key)):
        try:
            Path(path).read_bytes()
        except OSError as exc:
            raise ValueError(f"{variable}={path!r} cannot be read: {exc.strerror or exc}") from None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise ValueError(
            f"GATEWAY_TLS_CERT={cert!r} and GATEWAY_TLS_KEY={key!r} are not a PEM certificate and its "
            f"private key ({exc.reason or exc})"
        ) from None


def tls_sds(cert: str, key: str) -> str:
    """The SDS file for the certificate. Envoy re-reads both files when their folder sees a file
    moved in (a renewal by rename, as certbot and Kubernetes secrets do): no restart needed."""
    chain, private = Path(cert).resolve(), Path(key).resolve()
    secret = {
        "@type": f"{TLS}.Secret",
        "name": TLS_SECRET,
        "tls_certificate": {
            "certificate_chain": {"filename": str(chain)},
            "private_key": {"filename": str(private)},
            "watched_directory": {"path": str(chain.parent)},
        },
    }
    return json.dumps({"resources": [secret]}, indent=2)


def with_tls(config: dict[str, Any], manager: dict[str, Any], values: dict[str, str]) -> None:
    """HTTPS on the public listener (TLS 1.2+, ALPN h2 and http/1.1, HSTS), and optionally a
    plain-HTTP listener that only redirects to it (the bootstrap changed in place; `manager`: the
    public listener's HTTP connection manager in it)."""
    listeners = config["static_resources"]["listeners"]
    chain = listeners[0]["filter_chains"][0]
    sds = {"name": TLS_SECRET, "sds_config": {"path_config_source": {"path": values["tls_sds_path"]},
                                              "resource_api_version": "V3"}}  # fmt: skip
    chain["transport_socket"] = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": f"{TLS}.DownstreamTlsContext",
            "common_tls_context": {
                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_certificate_sds_secret_configs": [sds],
            },
        },
    }
    route_config = manager["route_config"]
    route_config["response_headers_to_add"].append({
        "header": {"key": "strict-transport-security", "value": "max-age=31536000"},
        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
    })  # fmt: skip
    if values["http_redirect_port"]:
        redirect = {"https_redirect": True, "port_redirect": int(values["listen_port"])}
        routes = [{"match": {"prefix": "/"}, "redirect": redirect}]
        manager = {
            "@type": HCM,
            "stat_prefix": "http_redirect",
            "route_config": {"virtual_hosts": [{"name": "to_https", "domains": ["*"], "routes": routes}]},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
        }  # fmt: skip
        address = {"address": values["listen_host"], "port_value": int(values["http_redirect_port"])}
        listeners.append({
            "name": "http_redirect",
            "address": {"socket_address": address},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": manager}]}],
        })  # fmt: skip
