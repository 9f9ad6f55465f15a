# ruff: noqa: E501 - a table of cases, one per line
"""The hand list of hostile requests: each case builds the raw bytes to send through Envoy.

A case knows whether it carries a working key (`authenticated`) and whether its target needs one
(`keyed`): an unauthenticated request to a keyed route must never get a 2xx.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

EMBED = b"/v1/embed"
BODY = json.dumps({"input_text": "hello"}).encode()
LOOKALIKE = "\u0455k_test_"  # Cyrillic dze in place of the Latin s


def request(
    method: bytes,
    path: bytes,
    headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
    body: bytes = b"",
    version: bytes = b"HTTP/1.1",
    close: bool = True,
) -> bytes:
    lines = [method + b" " + path + b" " + version, b"Host: gateway"]
    lines += [name + b": " + value for name, value in headers]
    if body or method == b"POST":
        lines.append(b"Content-Length: " + str(len(body)).encode())
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def bearer(key: str) -> tuple[bytes, bytes]:
    return b"Authorization", b"Bearer " + key.encode()


JSON = (b"Content-Type", b"application/json")


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[str], bytes]  # key → raw request bytes
    authenticated: bool = False
    keyed: bool = True
    responses: int = 1
    # A known gap, asserted as it is today so a fix shows up: (status, what is wrong).
    gap: tuple[int, str] | None = None


def embed(headers: list[tuple[bytes, bytes]], body: bytes = BODY, **kw: bytes) -> bytes:
    return request(b"POST", EMBED, [JSON, *headers], body, **kw)


CASES = [
    Case("no authorization", lambda k: embed([])),
    Case("blank authorization", lambda k: embed([(b"Authorization", b"")])),
    Case("bearer without key", lambda k: embed([(b"Authorization", b"Bearer ")])),
    Case("lowercase bearer", lambda k: embed([(b"Authorization", b"bearer " + k.encode())]), True),
    Case("key without scheme", lambda k: embed([(b"Authorization", k.encode())]), True),
    Case("basic scheme", lambda k: embed([(b"Authorization", b"Basic " + k.encode())]), True),
    Case("doubled authorization, both bogus",
         lambda k: embed([bearer("sk_test_" + "A" * 43), bearer("sk_test_" + "B" * 43)])),
    Case("doubled authorization, real then bogus",
         lambda k: embed([bearer(k), bearer("sk_test_" + "B" * 43)]), True),
    Case("x-api-key and bogus bearer", lambda k: embed([(b"X-API-Key", b"sk_test_" + b"C" * 43), bearer("x")])),
    Case("wrong prefix", lambda k: embed([bearer("sk_prod_" + k[8:])])),
    Case("live prefix on a test key", lambda k: embed([bearer("sk_live_" + k[8:])])),
    Case("too short", lambda k: embed([bearer(k[:-1])])),
    Case("too long", lambda k: embed([bearer(k + "A")])),
    Case("10 KB key", lambda k: embed([bearer(k + "A" * 10_000)])),
    Case("unicode look-alike prefix", lambda k: embed([(b"Authorization", ("Bearer " + LOOKALIKE + k[8:]).encode())])),
    Case("unicode in key body", lambda k: embed([(b"Authorization", ("Bearer " + k[:-1] + "\u00e9").encode())])),
    Case("NUL in authorization", lambda k: embed([(b"Authorization", b"Bearer " + k.encode() + b"\x00")])),
    Case("NUL in path", lambda k: request(b"GET", b"/v1/usage\x00/../health")),
    Case("CR in header value", lambda k: embed([(b"Authorization", b"Bearer \rsk_test_x")])),
    Case("8 KB header", lambda k: embed([bearer(k), (b"X-Filler", b"a" * 8192)]), True),
    Case("100 KB header", lambda k: embed([bearer(k), (b"X-Filler", b"a" * 102_400)]), True),
    Case("1 MB body", lambda k: embed([bearer(k)], json.dumps({"input_text": "a " * 500_000}).encode()), True),
    Case("invalid UTF-8 body", lambda k: embed([bearer(k)], b'{"input_text": "\xff\xfe\xc3\x28"}'), True),
    Case("JSON bomb (100k nested arrays)", lambda k: embed([bearer(k)], b'{"input_text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), True),
    Case("JSON bomb (deep objects)", lambda k: embed([bearer(k)], b'{"a":' * 50_000 + b"1" + b"}" * 50_000), True),
    Case("truncated JSON", lambda k: embed([bearer(k)], b'{"input_text": "hel'), True),
    Case("wrong content-type", lambda k: request(b"POST", EMBED, [bearer(k), (b"Content-Type", b"text/plain")], BODY), True),
    Case("form content-type", lambda k: request(b"POST", EMBED, [bearer(k), (b"Content-Type", b"application/x-www-form-urlencoded")], b"input_text=hi"), True),
    Case("HTTP/1.0 with key", lambda k: embed([bearer(k)], version=b"HTTP/1.0"), True),
    Case("HTTP/1.0 without key", lambda k: embed([], version=b"HTTP/1.0")),
    Case("pipelined: unauthenticated then health",
         lambda k: embed([], close=False) + request(b"GET", b"/health"), responses=2),
    Case("content-length and chunked together",
         lambda k: embed([(b"Transfer-Encoding", b"chunked")], b"0\r\n\r\n")),
    Case("negative content-length", lambda k: request(b"POST", EMBED, [JSON, (b"Content-Length", b"-1")])),
    Case("GET on POST route", lambda k: request(b"GET", EMBED, [bearer(k)]), True),
    Case("unknown method", lambda k: request(b"BREW", EMBED, [bearer(k)]), True),
    Case("spoofed key id, no key", lambda k: embed([(b"X-Gateway-Key-Id", b"1"), (b"X-Gateway-Plan", b"pro")])),
    Case("spoofed x-forwarded-for, no key", lambda k: embed([(b"X-Forwarded-For", b"127.0.0.1")])),
    # The public edge (trusted hops, hosts): a client cannot pick its address or bend routing.
    Case("forwarded-for chain with IPv6 and junk, no key",
         lambda k: embed([(b"X-Forwarded-For", b"::1, 10.0.0.1, not-an-ip, " + b"9" * 300)])),
    Case("spoofed envoy address headers, with key",
         lambda k: embed([bearer(k), (b"X-Envoy-External-Address", b"10.0.0.1"), (b"X-Real-IP", b"10.0.0.1")]),
         True),
    Case("second Host header, with key", lambda k: embed([bearer(k), (b"Host", b"evil.example")]), True),
    Case("host with port and capitals, with key", lambda k: embed([bearer(k)]).replace(
        b"Host: gateway", b"Host: GATEWAY:8443", 1), True),
    # Path tricks: none may reach Envoy admin or a keyed route without a key.
    Case("dot-dot to admin", lambda k: request(b"GET", b"/v1/../admin")),
    Case("dot-dot to stats", lambda k: request(b"GET", b"/v1/../stats")),
    Case("double slash", lambda k: embed([], close=True).replace(EMBED, b"//v1/embed", 1)),
    Case("encoded dot-dot", lambda k: request(b"GET", b"/v1/%2e%2e/ready"), keyed=False),
    Case("encoded slash", lambda k: request(b"POST", b"/v1%2fembed", [JSON], BODY)),
    Case("encoded slash in route", lambda k: request(b"POST", b"/v1/embed%2f..%2f..%2fusage", [JSON], BODY)),
    Case("backslash", lambda k: request(b"POST", b"/v1\\embed", [JSON], BODY)),
    Case("absolute-form URI", lambda k: request(b"POST", b"http://evil.example/v1/embed", [JSON], BODY)),
    Case("/stats on public port", lambda k: request(b"GET", b"/stats")),
    Case("/clusters on public port", lambda k: request(b"GET", b"/clusters")),
    Case("/config_dump on public port", lambda k: request(b"GET", b"/config_dump")),
    Case("/quitquitquit on public port", lambda k: request(b"POST", b"/quitquitquit")),
    Case("/auth/profile without key", lambda k: request(b"GET", b"/auth/profile")),
    Case("/v1/usage without key", lambda k: request(b"GET", b"/v1/usage")),
    # Usage records: the history needs a key whatever the query; a client's own key-id header is no key.
    Case("/v1/usage/history without key", lambda k: request(b"GET", b"/v1/usage/history?granularity=day&start=2026-01-01")),
    Case("/v1/usage/history spoofed key id", lambda k: request(b"GET", b"/v1/usage/history", [(b"X-Gateway-Key-Id", b"key_0000000000000000")])),
    Case("/auth/register without admin token",
         lambda k: request(b"POST", b"/auth/register", [JSON], b'{"name": "x"}')),
    # Request signing: the signed route (X-Signature present) buffers the body for authz; a key
    # that does not sign ignores the headers, and no header value can crash the check.
    Case("signature headers, no key",
         lambda k: embed([(b"X-Signature", b"v1=" + b"0" * 64), (b"X-Signature-Timestamp", b"1")])),
    Case("10 KB signature, no key", lambda k: embed([(b"X-Signature", b"v1=" + b"f" * 10_000)])),
    Case("junk signature headers on a key that does not sign",
         lambda k: embed([bearer(k), (b"X-Signature", b"v1=\xff\xfe"), (b"X-Signature-Timestamp", b"9" * 400)]),
         True),
    Case("signature header on a chunked body, with key",
         lambda k: request(b"POST", EMBED, [JSON, bearer(k), (b"X-Signature", b"v1=1"),
                                            (b"Transfer-Encoding", b"chunked")], b"").replace(
             b"Content-Length: 0\r\n", b"", 1).removesuffix(b"\r\n\r\n") + b"\r\n\r\n" +
             hex(len(BODY))[2:].encode() + b"\r\n" + BODY + b"\r\n0\r\n\r\n", True),
]  # fmt: skip
