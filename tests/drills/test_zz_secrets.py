"""Secrets: after the hostile run (this module sorts last), no log the session wrote holds a plaintext
key, a request-signing secret or the signing master key.

Checks each key's secret part (the 43 characters after the prefix), so a log that trimmed or
re-quoted the prefix would still be caught. One line is allowed by design: the authz service
prints its dev key once at start ("Dev API key: …", README quick start), so that exact banner line is
taken out before the search; the key anywhere else is a leak.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Gateway
from tests.drills.conftest import DrillLog, Row
from tests.signing_keys import SIGNING_MASTER_KEY


def test_no_plaintext_key_in_any_log(run_dir: Path, gateway: Gateway, drill_log: DrillLog) -> None:
    keys = {gateway.dev_key, *drill_log.keys}
    # Every process of the session logs under its temp root (run_dir and the inference folders).
    logs = [path for path in run_dir.parent.rglob("*.log") if path.is_file()]
    assert any(path.name == "envoy.log" for path in logs) and len(logs) >= 5, logs
    secrets = {key: key.split("_", 2)[2] for key in keys}
    # Signing secrets (ss_ + 43 characters: their tail) and the master key, as they are.
    secrets |= {secret: secret.removeprefix("ss_") for secret in drill_log.secrets}
    secrets[SIGNING_MASTER_KEY] = SIGNING_MASTER_KEY
    leaks, lines = [], 0
    for path in logs:
        text = path.read_text(errors="replace")
        text = "\n".join(line for line in text.splitlines() if line != f"Dev API key: {gateway.dev_key}")
        lines += text.count("\n")
        leaks += [f"{path.name}: {key[:12]}…" for key, secret in secrets.items() if secret in text]
    assert not leaks, leaks
    assert lines > 10  # the logs were really written
    drill_log.record(
        Row(
            "secrets: plaintext keys and signing secrets in logs",
            "no key or signing secret appears in any log line",
            f"{len(keys)} keys, {len(drill_log.secrets)} signing secrets and the master key searched in "
            f"{len(logs)} logs ({lines} lines): 0 found"
            " (besides the designed one-line dev-key banner at authz start)",
            "tests/drills/test_zz_secrets.py::test_no_plaintext_key_in_any_log",
        )
    )
