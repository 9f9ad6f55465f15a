"""Triton python-backend model: EMBEDDING [B, 384] fp32 -> PROBS [B, 5] fp32 (softmax of a linear layer).

The weights (weights.json next to this file) come from `python -m inference.detection.train`; the
maths is inference/detection/head.py `probabilities`, repeated here because the stub cannot import
the project's packages. numpy only: no torch in this stub.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

WEIGHTS_FORMAT = "detect-head/1"


def softmax_linear(embeddings: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    logits = embeddings @ weight.T + bias
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        path = Path(args["model_repository"]) / args["model_version"] / (params.get("weights_file") or "")
        doc = json.loads(path.read_text())
        if doc.get("format") != WEIGHTS_FORMAT:
            raise pb_utils.TritonModelException(f"{path}: not a {WEIGHTS_FORMAT} weights file")
        self.weight = np.asarray(doc["weight"], dtype=np.float32)
        self.bias = np.asarray(doc["bias"], dtype=np.float32)
        # A config that disagrees with the weights would answer garbage: refuse to load instead.
        in_dim = int(pb_utils.get_input_config_by_name(config, "EMBEDDING")["dims"][-1])
        out_dim = int(pb_utils.get_output_config_by_name(config, "PROBS")["dims"][-1])
        if self.weight.shape != (out_dim, in_dim) or self.bias.shape != (out_dim,):
            raise pb_utils.TritonModelException(
                f"{path}: weight {self.weight.shape} / bias {self.bias.shape} do not fit "
                f"EMBEDDING [{in_dim}] -> PROBS [{out_dim}] in config.pbtxt"
            )
        pb_utils.Logger.log_info(f"detect_head: loaded {path.name}, classes={doc.get('classes')}")

    def execute(self, requests: list[Any]) -> list[Any]:
        parts = [pb_utils.get_input_tensor_by_name(r, "EMBEDDING").as_numpy() for r in requests]
        probs = softmax_linear(np.concatenate(parts).astype(np.float32, copy=False), self.weight, self.bias)
        responses, start = [], 0
        for part in parts:
            end = start + len(part)
            responses.append(
                pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("PROBS", probs[start:end])])
            )
            start = end
        return responses
