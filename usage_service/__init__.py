"""Usage records: per key, route and hour, fed from Envoy's usage access log (docs/usage.md).

records (parse one log line) → aggregate (sum per key/route/hour) → tail (complete lines from a
committed byte offset) → store (one Postgres transaction: counts + offset) → writer (the loop);
http serves /v1/usage/history and /admin/usage; reading holds the queries others may import.
"""
