"""The request-signing master key of every authz process, key API and key CLI the tests start."""

SIGNING_MASTER_KEY = "dGVzdC1zaWduaW5nLW1hc3Rlci1rZXktMzItYnl0ZXM="  # base64 of 32 bytes
