"""Prometheus metrics of the writer (served at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

LINES = Counter("usage_log_lines", "usage log lines committed, by outcome", ["outcome"])
COMMITS = Counter("usage_commits", "transactions that stored counts and the log position")
STORE_ERRORS = Counter("usage_store_errors", "failed store operations (retried with backoff)")
POSITION_MOVED = Counter("usage_position_conflicts", "commits refused: another writer moved the position")
LAG_BYTES = Gauge("usage_log_lag_bytes", "bytes of the current log file not yet committed")
LAST_COMMIT = Gauge("usage_last_commit_timestamp_seconds", "when the last commit succeeded (unix time)")
PRUNED = Counter("usage_hourly_rows_pruned", "hourly rows deleted by the retention")
TOKENS_CHARGED = Counter(
    "usage_tokens_charged", "tokens charged to token limits (GATEWAY_TOKEN_CHARGE=usage)"
)
TOKEN_CHARGE_ERRORS = Counter("usage_token_charge_errors", "token charges that failed outside the store")
