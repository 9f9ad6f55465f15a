"""The classifier head: a linear layer + softmax over CLASSES, stored as plain JSON numbers.

The Triton model (model_repository/detect_head/1/model.py) applies exactly `probabilities` below;
it carries its own copy of these few lines because the python backend cannot import this package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference.detection.labels import CLASSES

FORMAT = "detect-head/1"
WEIGHTS_PATH = Path(__file__).resolve().parents[1] / "model_repository" / "detect_head" / "1" / "weights.json"


@dataclass(frozen=True)
class Head:
    weight: np.ndarray  # (classes, dim) float32
    bias: np.ndarray  # (classes,) float32
    classes: tuple[str, ...] = CLASSES
    training: dict[str, Any] = field(default_factory=dict)  # provenance: corpus hash, C, library versions

    def __post_init__(self) -> None:
        if self.weight.ndim != 2 or self.weight.shape[0] != len(self.classes):
            raise ValueError(f"weight must be ({len(self.classes)}, dim), got {self.weight.shape}")
        if self.bias.shape != (len(self.classes),):
            raise ValueError(f"bias must be ({len(self.classes)},), got {self.bias.shape}")

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1])


def probabilities(head: Head, embeddings: np.ndarray) -> np.ndarray:
    """(n, dim) embeddings -> (n, classes) probabilities; each row sums to 1."""
    logits = np.asarray(embeddings, dtype=np.float32) @ head.weight.T + head.bias
    logits -= logits.max(axis=1, keepdims=True)  # exp never overflows
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def to_json(head: Head) -> str:
    """The weights file: float32 values written with 9 significant digits (enough to round-trip float32)."""

    def floats(values: np.ndarray) -> Any:
        return [float(f"{v:.9g}") for v in values.astype(np.float32).tolist()]

    rows = ",\n  ".join(json.dumps(floats(row)) for row in head.weight)
    fields = {
        "format": json.dumps(FORMAT),
        "classes": json.dumps(list(head.classes)),
        "input_dim": str(head.dim),
        "training": json.dumps(head.training, sort_keys=True),
        "bias": json.dumps(floats(head.bias)),
        "weight": f"[\n  {rows}\n ]",  # one class per line: a retrained head diffs by line
    }
    return "{\n" + ",\n".join(f" {json.dumps(k)}: {v}" for k, v in fields.items()) + "\n}\n"


def from_json(text: str) -> Head:
    doc = json.loads(text)
    if doc.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} weights file (format={doc.get('format')!r})")
    head = Head(
        weight=np.asarray(doc["weight"], dtype=np.float32),
        bias=np.asarray(doc["bias"], dtype=np.float32),
        classes=tuple(doc["classes"]),
        training=doc.get("training", {}),
    )
    if head.dim != doc["input_dim"]:
        raise ValueError(f"input_dim {doc['input_dim']} does not match the weight rows ({head.dim})")
    return head


def load(path: Path = WEIGHTS_PATH) -> Head:
    return from_json(path.read_text())
