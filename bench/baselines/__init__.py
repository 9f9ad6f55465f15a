"""Gateways a user might pick instead of ours, rebuilt here only to be measured against."""
