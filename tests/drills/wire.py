"""Raw HTTP/1.x over a socket, for requests httpx refuses to send (NUL bytes, pipelining, HTTP/1.0)."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass

import httpx

ERROR_FIELDS = {"error", "detail", "code"}


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def parse_responses(data: bytes) -> list[RawResponse]:
    """Every complete response in `data` (Content-Length framed, or up to EOF)."""
    responses = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", len(rest)))
        responses.append(RawResponse(status, headers, rest[:length]))
        data = rest[length:]
    return responses


def exchange(url: str, payload: bytes, timeout: float = 10) -> list[RawResponse]:
    """Send `payload` as is, read until the server closes (or `timeout`), parse the responses."""
    address = httpx.URL(url)
    chunks = []
    with socket.create_connection((address.host, address.port), timeout=timeout) as sock:
        sock.sendall(payload)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return parse_responses(b"".join(chunks))


def is_error_shape(status: int, body: bytes) -> bool:
    """Responses ≥ 400 must carry the gateway's JSON error body; others are not checked here."""
    if status < 400:
        return True
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    return isinstance(parsed, dict) and parsed.keys() >= ERROR_FIELDS
