"""Sliding-window rate limiting for Envoy's ratelimit filter (gRPC) backed by Redis."""
