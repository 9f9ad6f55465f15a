"""Prompt-injection detection: a labelled corpus, a trained classifier head, and the pure maths around it.

The served model is a Triton ensemble `detector` (model_repository/detector): the `embedder` turns
text into a MiniLM vector, `detect_head` (numpy only) turns the vector into class probabilities.
This package holds what is needed to build and judge that head, and what the adapter needs to read it:

- `labels`: the classes, in the order of the head's PROBS output.
- `corpus`: the labelled examples (corpus/*.txt) and their fixed train/test split.
- `verdict`: probabilities -> {is_malicious, confidence, threat_types} (used by the adapter and evaluation).
- `head`: the head's weights file and its scoring maths (softmax of a linear layer).
- `embeddings`: the same MiniLM embeddings the Triton embedder computes, for training and evaluation.
- `train`, `evaluate`: `python -m inference.detection.train` / `.evaluate`.
"""
