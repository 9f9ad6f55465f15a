"""The few pieces every service shares: error bodies, CLI/env settings, gRPC serving."""
