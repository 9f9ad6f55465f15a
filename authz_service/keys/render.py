"""How the key CLI shows keys: a dict (for --json) and text. Never a secret, never a hash."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from authz_service.model import KeyRecord
from authz_service.plans import Plans


def _when(moment: datetime | None, none: str = "never") -> str:
    return none if moment is None else moment.isoformat(timespec="seconds")


def key_dict(record: KeyRecord, plans: Plans) -> dict[str, Any]:
    limits = plans.key_limits(record)
    return {
        "id": record.id,
        "prefix": record.display_prefix,
        "name": record.name,
        "owner": record.owner,
        "environment": record.environment,
        "plan": record.plan,
        "rate_limit_per_minute": limits.per_minute,
        "rate_limit_per_hour": limits.per_hour,
        "token_limit_per_minute": limits.tokens_per_minute,
        "token_limit_per_day": limits.tokens_per_day,
        "scopes": list(record.scopes),
        "allowed_ips": list(record.allowed_ips),
        "signing": record.signing,
        "status": str(record.status()),
        "created_at": _when(record.created_at),
        "expires_at": record.expires_at and _when(record.expires_at),
        "revoked_at": record.revoked_at and _when(record.revoked_at),
        "last_used_at": record.last_used_at and _when(record.last_used_at),
        "replaced_by": record.replaced_by,
    }


def _details(key: dict[str, Any]) -> list[str]:
    scopes = ", ".join(key["scopes"]) or "all routes"
    return [
        f"id       {key['id']}",
        f"prefix   {key['prefix']}",
        f"name     {key['name']} (owner {key['owner']})",
        f"plan     {key['plan']} ({key['rate_limit_per_minute']}/minute, {key['rate_limit_per_hour']}/hour)",
        f"tokens   {_tokens(key)}",
        f"scopes   {scopes}",
        f"from     {', '.join(key['allowed_ips']) or 'any address'}",
        f"signing  {'required (X-Signature)' if key['signing'] else 'off'}",
        f"expires  {key['expires_at'] or 'never'}",
    ]


def _tokens(key: dict[str, Any]) -> str:
    limits = [f"{key[f'token_limit_per_{unit}']}/{unit}" for unit in ("minute", "day")]
    shown = [text for text in limits if not text.startswith("None")]
    return ", ".join(shown) or "no limit"


def _secret(key: dict[str, Any]) -> list[str]:
    lines = ["API key (shown once; only its hash is stored, so store it now):", f"  {key['api_key']}", ""]
    if key.get("signing_secret"):
        lines += ["Signing secret (shown once; stored encrypted):", f"  {key['signing_secret']}", ""]
    return lines


def _row(k: dict[str, Any]) -> list[str]:
    limits = f"{k['rate_limit_per_minute']}/m {k['rate_limit_per_hour']}/h"
    return [
        k["id"], k["prefix"] + "…", k["name"], k["owner"], k["plan"], limits, ",".join(k["scopes"]) or "all",
        k["status"], k["created_at"][:16], (k["expires_at"] or "never")[:16], (k["last_used_at"] or "-")[:16],
    ]  # fmt: skip


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no keys"
    columns = ["id", "prefix", "name", "owner", "plan", "limits", "scopes", "status", "created", "expires",
               "last used"]  # fmt: skip
    cells = [_row(k) for k in rows]
    widths = [max(len(str(row[i])) for row in [columns, *cells]) for i in range(len(columns))]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
                     for row in [columns, *cells])  # fmt: skip


def text(command: str, result: Any) -> str:
    if command == "list":
        return _table(result)
    if command == "revoke":
        return f"Revoked {result['id']} ({result['prefix']}…, {result['name']}) at {result['revoked_at']}."
    lines = _secret(result) + _details(result)
    if command == "rotate":
        old = result["replaces"]
        lines.append(f"replaces {old['id']} ({old['prefix']}…), which stops working at {old['revoked_at']}")
    return "\n".join(lines)
