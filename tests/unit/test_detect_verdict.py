"""Probabilities -> {is_malicious, confidence, threat_types}."""

from __future__ import annotations

import numpy as np
import pytest

from inference.detection.labels import CLASSES
from inference.detection.verdict import Verdict, predicted_classes, verdict

# CLASSES order: benign, jailbreak, prompt_injection, data_exfiltration, system_prompt_leak


def test_benign_when_benign_probability_is_at_least_half() -> None:
    assert verdict([0.5, 0.2, 0.1, 0.1, 0.1]) == Verdict(False, 0.5, ())
    result = verdict([0.9, 0.04, 0.03, 0.02, 0.01])
    assert not result.is_malicious and result.confidence == pytest.approx(0.9) and result.threat_types == ()


def test_malicious_when_threats_together_outweigh_benign() -> None:
    # No single threat beats benign (0.4), but together they are 0.6: malicious.
    result = verdict([0.4, 0.2, 0.15, 0.15, 0.1])
    assert result.is_malicious and result.confidence == pytest.approx(0.6)
    assert result.threat_types == ("jailbreak",)


def test_secondary_threats_above_the_floor_follow_the_leading_one() -> None:
    result = verdict([0.05, 0.02, 0.45, 0.08, 0.40])
    assert result.threat_types == ("prompt_injection", "system_prompt_leak")
    assert result.predicted_class == "prompt_injection"
    assert verdict([0.05, 0.02, 0.70, 0.08, 0.15]).threat_types == ("prompt_injection",)


def test_confidence_is_never_below_half() -> None:
    rng = np.random.default_rng(1)
    for row in rng.dirichlet(np.ones(len(CLASSES)), size=200):
        assert verdict(row.tolist()).confidence >= 0.5


def test_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="4 probabilities for 5 classes"):
        verdict([0.25, 0.25, 0.25, 0.25])


def test_vectorised_decision_matches_verdict() -> None:
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(len(CLASSES)) * 0.5, size=500)
    expected = [CLASSES.index(verdict(row.tolist()).predicted_class) for row in probs]
    assert predicted_classes(probs).tolist() == expected
