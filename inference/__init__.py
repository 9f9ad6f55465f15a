"""Inference: the Triton model repository, a local Triton launcher and the HTTP adapter.

- `inference/model_repository/` — Triton models (`embedder`: MiniLM-L6 text embeddings).
- `python -m inference.triton` — runs the tritonserver binary shipped in PyPI `nvidia-pytriton`.
- `python -m inference.adapter` — FastAPI service (`/v1/embed`, `/health`, `/ready`) that talks
  to Triton over gRPC.
"""
