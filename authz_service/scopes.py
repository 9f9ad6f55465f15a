"""Route groups and key scopes (pure).

A key's `scopes` list the route groups it may call; an empty list means every group, so
keys created before scopes existed keep working. The group of a request is derived from
its path (Envoy has already normalised it: dot segments and double slashes are gone).
Paths outside every group are refused for scoped keys (fail closed: a new route is not
silently open to keys that were meant to be narrow).
"""

from __future__ import annotations

from urllib.parse import unquote

EMBED, DETECT, USAGE = "embed", "detect", "usage"
SCOPES = (EMBED, DETECT, USAGE)

# Path (and everything below it) → route group. /auth/profile reads the key's own quota,
# like /v1/usage, so both belong to `usage`.
ROUTE_GROUPS: dict[str, str] = {
    "/v1/embed": EMBED,
    "/v1/embeddings": EMBED,
    "/v1/detect": DETECT,
    "/v1/usage": USAGE,
    "/auth/profile": USAGE,
}


def route_group(path: str) -> str | None:
    """The group of a request path (query string ignored), or None when no group covers it."""
    path = path.partition("?")[0]
    if "%" in path:
        # The upstream decodes %XX, so /v1/%65mbed must count as /v1/embed.
        path = unquote(path)
    path = path.rstrip("/")
    while path:
        group = ROUTE_GROUPS.get(path)
        if group is not None:
            return group
        path = path.rpartition("/")[0]
    return None


def allows(scopes: frozenset[str], path: str) -> bool:
    """Whether a key with `scopes` may call `path` (no scopes = every route)."""
    return not scopes or route_group(path) in scopes


def parse_scopes(text: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """`embed,usage` (or a list) → ('embed', 'usage'); empty → () (all). ValueError for unknown names."""
    if text is None:
        return ()
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [item.strip().lower() for item in items if item.strip()]
    unknown = sorted(set(names) - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; choose from {', '.join(SCOPES)}")
    return tuple(sorted(set(names), key=SCOPES.index))
