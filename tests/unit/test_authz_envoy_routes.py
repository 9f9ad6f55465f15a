"""The /auth/ routes of the rendered Envoy config: what is public, what needs a key, where it goes."""

from __future__ import annotations

import re

import yaml

from stack import envoy as launcher

render = launcher.renderer()
EXT_AUTHZ = "envoy.filters.http.ext_authz"


def auth_routes() -> tuple[list[dict], dict]:
    config = yaml.safe_load(render.render(render.values_from_env({"authz_http_port": "19002"})))
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]
    return [r for r in routes if r["route"].get("cluster") == "authz_http"], config


def route_for(routes: list[dict], path: str) -> dict:
    """The first /auth route that matches `path` (Envoy's order; safe_regex is a full match)."""
    for route in routes:
        match = route["match"]
        if "safe_regex" in match and re.fullmatch(match["safe_regex"]["regex"], path):
            return route
        if "prefix" in match and path.startswith(match["prefix"]):
            return route
    raise AssertionError(f"no /auth route for {path}")


def test_registration_and_docs_are_public_and_strip_identity_headers() -> None:
    routes, _ = auth_routes()
    for path in ("/auth/register", "/auth/docs", "/auth/redoc", "/auth/openapi.json"):
        route = route_for(routes, path)
        assert route["typed_per_filter_config"][EXT_AUTHZ]["disabled"] is True, path
        assert {"x-gateway-key-id", "x-gateway-owner", "x-gateway-plan"} <= set(
            route["request_headers_to_remove"]
        )


def test_profile_and_any_other_auth_path_need_a_key() -> None:
    routes, _ = auth_routes()
    for path in ("/auth/profile", "/auth/registerx", "/auth/docs/x", "/auth/anything"):
        route = route_for(routes, path)
        assert EXT_AUTHZ not in route.get("typed_per_filter_config", {}), path
        # ext_authz sets these on this route: removing them here would drop the real values.
        assert "x-gateway-key-id" not in route.get("request_headers_to_remove", [])


def test_auth_http_cluster_port_comes_from_values() -> None:
    _, config = auth_routes()
    cluster = next(c for c in config["static_resources"]["clusters"] if c["name"] == "authz_http")
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"]["port_value"] == 19002
