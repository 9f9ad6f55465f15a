"""Session fixtures for ratelimit tests (registered in tests/conftest.py)."""
