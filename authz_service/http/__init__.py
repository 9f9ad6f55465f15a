"""The key API over HTTP (FastAPI): POST /auth/register, GET /auth/profile, OpenAPI docs.

Runs as its own process (`python -m authz_service.http`) so the ext_authz hot path never
shares an event loop with JSON and pydantic work. Envoy routes /auth/* here.
"""
