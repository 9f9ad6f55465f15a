"""Session fixtures for authz tests (registered in tests/conftest.py)."""
