"""HTTP adapter in front of Triton (FastAPI + tritonclient aio).

Endpoints: `/v1/embed`, `/v1/embeddings` (OpenAI-compatible), `/health`, `/ready`, `/metrics`, `/docs`.
Run with `python -m inference.adapter`; build an app in-process with `create_app(AdapterSettings(...))`.
"""
