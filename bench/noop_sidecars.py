"""`python -m bench.noop_sidecars {authz,ratelimit}`: sidecars that answer OK without doing any work.

They measure the cost floor of the architecture: the same grpc.aio server (common.grpc_serving),
the same protobuf messages and the same Envoy filter chain as the real services, but every
answer is a response built once at start, shaped like the product's: the rate limiter's OK
carries the X-RateLimit-* headers the real one adds to every response, and so does the
ext_authz-alone reply (the one-sidecar floor of fused mode, whose OK adds the same headers).
The gap between these and the real services is the real work (key lookup, Redis round trip);
the gap between these and Envoy alone is transport.
"""

from __future__ import annotations

import argparse
import sys

from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.service.auth.v3 import external_auth_pb2_grpc
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse, OkHttpResponse
from envoy.service.ratelimit.v3 import rls_pb2_grpc
from envoy.service.ratelimit.v3.rls_pb2 import RateLimitResponse
from google.protobuf.struct_pb2 import Struct
from google.rpc import code_pb2, status_pb2

from common import event_loop
from common.grpc_serving import GrpcApp
from common.settings import add_option
from ratelimit_service.responses import rate_limit_headers
from ratelimit_service.windows import Decision, Window, WindowState

OVERWRITE = HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def limit_headers() -> list[HeaderValue]:
    """The X-RateLimit-* headers of an admitted request under the default 60/min + 1000/h."""
    states = (
        WindowState(Window("minute", 60), prev=10, cur=1, elapsed_ms=30_000),
        WindowState(Window("hour", 1000), prev=10, cur=1, elapsed_ms=1_800_000),
    )
    return rate_limit_headers(Decision(True, states, 1))


def ok_check(key_id: str) -> CheckResponse:
    """Shaped like the real service's OK: identity headers, credentials removed, dynamic metadata.

    With an empty `key_id` there is no x-gateway-key-id, so the template's rate-limit action has
    no descriptor and Envoy skips the ratelimit call: that is the "ext_authz alone" floor, and
    its reply also carries the rate-limit headers, as fused mode's OK does.
    """
    identity = {"x-gateway-owner": "bench", "x-gateway-plan": "free"}
    fields: dict[str, str] = {"plan": "free", "owner": "bench"}
    if key_id:
        identity["x-gateway-key-id"] = fields["key_id"] = key_id
    metadata = Struct()
    metadata.update(fields)
    headers = [
        HeaderValueOption(header=HeaderValue(key=name, value=value), append_action=OVERWRITE)
        for name, value in identity.items()
    ]
    ok = OkHttpResponse(headers=headers, headers_to_remove=["authorization", "x-api-key"])
    if not key_id:
        ok.response_headers_to_add.extend(HeaderValueOption(header=h) for h in limit_headers())
    status = status_pb2.Status(code=code_pb2.OK)
    return CheckResponse(status=status, ok_response=ok, dynamic_metadata=metadata)


class NoopAuthorization(external_auth_pb2_grpc.AuthorizationServicer):
    def __init__(self, key_id: str) -> None:
        self.reply = ok_check(key_id)

    async def Check(self, request, context):
        return self.reply


class NoopRateLimit(rls_pb2_grpc.RateLimitServiceServicer):
    reply = RateLimitResponse(overall_code=RateLimitResponse.OK, response_headers_to_add=limit_headers())

    async def ShouldRateLimit(self, request, context):
        return self.reply


async def serve(args: argparse.Namespace) -> None:
    if args.kind == "authz":
        app = GrpcApp(args.port, "127.0.0.1", ["envoy.service.auth.v3.Authorization"])
        servicer = NoopAuthorization(args.key_id)
        external_auth_pb2_grpc.add_AuthorizationServicer_to_server(servicer, app.server)
    else:
        app = GrpcApp(args.port, "127.0.0.1", ["envoy.service.ratelimit.v3.RateLimitService"])
        rls_pb2_grpc.add_RateLimitServiceServicer_to_server(NoopRateLimit(), app.server)

    async def on_start() -> None:
        await app.set_serving(True)
        print(f"noop {args.kind} sidecar on 127.0.0.1:{app.bound_port}", flush=True)

    await app.run(on_start, drain_seconds=0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.noop_sidecars", description=__doc__.splitlines()[0]
    )
    parser.add_argument("kind", choices=["authz", "ratelimit"], help="which sidecar to imitate")
    add_option(parser, "--port", "NOOP_SIDECAR_PORT", 0, "gRPC port on 127.0.0.1", int)
    add_option(
        parser, "--key-id", "NOOP_KEY_ID", "key_bench",
        "authz: x-gateway-key-id to set; '' sets none, so Envoy skips the ratelimit call",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        event_loop.run(serve(args))
    except OSError as exc:
        sys.exit(f"noop sidecar: {exc}")


if __name__ == "__main__":
    main()
