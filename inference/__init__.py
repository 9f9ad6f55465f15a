"""Inference: the Triton model repository, a local Triton launcher and the HTTP adapter.

- `inference/model_repository/` — Triton models (`embedder`: MiniLM-L6 text embeddings).
- `python -m inference.triton` — runs the tritonserver binary shipped in PyPI `nvidia-pytriton`.
- `python -m inference.adapter` — FastAPI service (`/v1/embed`, `/v1/embeddings`, `/health`, `/ready`,
  `/metrics`) that talks to Triton over gRPC.

See docs/inference.md.
"""
