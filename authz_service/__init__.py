"""API-key authentication for Envoy's ext_authz filter (gRPC) backed by Postgres."""
