"""The classifier head: scoring maths, the weights file, and its agreement with the Triton configs."""

from __future__ import annotations

import importlib.util
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from inference.detection import head
from inference.detection.labels import CLASSES

REPO = Path(__file__).resolve().parents[2] / "inference" / "model_repository"


def small_head() -> head.Head:
    weight = np.array([[1, 0], [0, 1], [0, 0], [-1, 0], [0, -1]], dtype=np.float32)
    return head.Head(weight=weight, bias=np.array([0, 0, 0, 0, 0.5], dtype=np.float32))


def test_probabilities_are_the_softmax_of_the_linear_layer() -> None:
    x = np.array([[2.0, 0.0], [0.0, 0.0]], dtype=np.float32)
    probs = head.probabilities(small_head(), x)
    logits = np.array([[2, 0, 0, -2, 0.5], [0, 0, 0, 0, 0.5]])
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)


def test_probabilities_do_not_overflow_on_huge_logits() -> None:
    probs = head.probabilities(small_head(), np.array([[1e4, 0.0]], dtype=np.float32))
    assert np.isfinite(probs).all() and probs[0, 0] == pytest.approx(1.0)


def test_json_round_trip_keeps_float32_exactly() -> None:
    rng = np.random.default_rng(7)
    original = head.Head(
        weight=rng.normal(size=(5, 384)).astype(np.float32),
        bias=rng.normal(size=5).astype(np.float32),
        training={"C": 0.01},
    )
    loaded = head.from_json(head.to_json(original))
    assert np.array_equal(loaded.weight, original.weight) and np.array_equal(loaded.bias, original.bias)
    assert loaded.classes == CLASSES and loaded.training == {"C": 0.01}


def test_weights_file_format_is_checked() -> None:
    with pytest.raises(ValueError, match="not a detect-head/1"):
        head.from_json('{"format": "other"}')
    with pytest.raises(ValueError, match="weight must be"):
        head.Head(weight=np.zeros((4, 3), np.float32), bias=np.zeros(5, np.float32))


def test_shipped_weights_fit_the_triton_configs_and_are_small() -> None:
    shipped = head.load()
    assert shipped.classes == CLASSES and shipped.dim == 384
    assert head.WEIGHTS_PATH.stat().st_size < 64 * 1024
    config = (REPO / "detect_head" / "config.pbtxt").read_text()
    dims = [int(d) for d in re.findall(r"dims: \[ (\d+) \]", config)]
    assert dims == [shipped.dim, len(CLASSES)]
    ensemble = (REPO / "detector" / "config.pbtxt").read_text()
    assert f"dims: [ {len(CLASSES)} ]" in ensemble and 'model_name: "embedder"' in ensemble


def load_triton_model_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """detect_head/1/model.py with a stand-in for the module only the Triton stub provides."""
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", types.ModuleType("pb_utils"))
    path = REPO / "detect_head" / "1" / "model.py"
    spec = importlib.util.spec_from_file_location("detect_head_model", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_triton_model_applies_the_same_maths(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stub cannot import inference.detection: its copy of the maths must not drift."""
    shipped = head.load()
    x = np.random.default_rng(3).normal(size=(8, shipped.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    served = load_triton_model_module(monkeypatch).softmax_linear(x, shipped.weight, shipped.bias)
    np.testing.assert_allclose(served, head.probabilities(shipped, x), rtol=1e-5, atol=1e-7)
    assert served.dtype == np.float32
