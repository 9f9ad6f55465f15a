"""HTTP adapter in front of Triton (FastAPI + tritonclient aio): `POST /v1/embed`, `/health`, `/ready`.

Run with `python -m inference.adapter`; build an app in-process with `create_app(AdapterSettings(...))`.
"""
