"""Class probabilities -> the API's verdict {is_malicious, confidence, threat_types}. Pure.

- is_malicious: P(not benign) = 1 - P(benign) > MALICIOUS_THRESHOLD (0.5, fixed a priori; the test
  split never chose it). A tie is benign.
- confidence: the probability of the answer given, P(not benign) or P(benign), so always >= 0.5.
- threat_types: empty for benign text; else the most likely threat first, then any other threat with
  P >= SECONDARY_THREAT_MIN (an injection that asks for the system prompt is both), by probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inference.detection.labels import BENIGN, CLASSES

MALICIOUS_THRESHOLD = 0.5
SECONDARY_THREAT_MIN = 0.25


@dataclass(frozen=True)
class Verdict:
    is_malicious: bool
    confidence: float
    threat_types: tuple[str, ...]

    @property
    def predicted_class(self) -> str:
        """One class per text, for per-class metrics: benign, or the leading threat."""
        return self.threat_types[0] if self.is_malicious else BENIGN


def verdict(
    probs: Sequence[float],
    classes: Sequence[str] = CLASSES,
    threshold: float = MALICIOUS_THRESHOLD,
) -> Verdict:
    if len(probs) != len(classes):
        raise ValueError(f"{len(probs)} probabilities for {len(classes)} classes")
    by_class = {name: float(p) for name, p in zip(classes, probs, strict=True)}
    p_benign = by_class.pop(BENIGN)
    p_malicious = 1.0 - p_benign
    if p_malicious <= threshold:
        return Verdict(is_malicious=False, confidence=p_benign, threat_types=())
    ranked = sorted(by_class.items(), key=lambda item: item[1], reverse=True)
    threats = [ranked[0][0], *(name for name, p in ranked[1:] if p >= SECONDARY_THREAT_MIN)]
    return Verdict(is_malicious=True, confidence=p_malicious, threat_types=tuple(threats))


def predicted_classes(probs: np.ndarray, threshold: float = MALICIOUS_THRESHOLD) -> np.ndarray:
    """Row-wise `verdict(...).predicted_class` as CLASSES indices, for (n, classes) probabilities."""
    benign = CLASSES.index(BENIGN)
    threats = np.delete(probs, benign, axis=1)
    leading = np.delete(np.arange(len(CLASSES)), benign)[threats.argmax(axis=1)]
    return np.where(1.0 - probs[:, benign] > threshold, leading, benign)
