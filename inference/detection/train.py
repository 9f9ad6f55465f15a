"""`python -m inference.detection.train`: fit the classifier head on the corpus's train split.

Reproducible: the split is fixed by text hashes (corpus.py), the cross-validation folds by SEED,
and the solver (lbfgs) is deterministic. The regularisation strength C and the class weighting are
chosen by stratified 5-fold cross-validation on the train split only (macro F1); the test split is
never read here.
scikit-learn is needed at training time only: the result is a plain JSON weights file
(a linear layer: the standardisation is folded into it) that the Triton model applies with numpy.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common.settings import add_option
from inference.detection import corpus, head
from inference.detection.labels import CLASSES
from inference.detection.verdict import predicted_classes

SEED = 20240903
C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
# "balanced" weighs each class equally (more recall on threats, more false alarms on benign text);
# None keeps the corpus's proportions (benign is about half). Cross-validation decides.
WEIGHTINGS = (None, "balanced")
FOLDS = 5


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inference.detection.train",
        description="Train the prompt-injection classifier head on the corpus's train split and write "
        "its weights (JSON) into the Triton model repository. Embeddings are computed with the same "
        "MiniLM the Triton embedder serves (~10 s on 2 cores); fitting takes a few seconds.",
    )
    add_option(parser, "--corpus", "DETECT_CORPUS_DIR", str(corpus.CORPUS_DIR), "labelled corpus folder")
    add_option(parser, "--output", "DETECT_WEIGHTS", str(head.WEIGHTS_PATH), "weights file to write")
    return parser


Params = tuple[float, str | None]  # (C, class_weight)


def pipeline(params: Params) -> Any:  # an sklearn Pipeline (sklearn is imported lazily)
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    c, weighting = params
    return make_pipeline(
        StandardScaler(), LogisticRegression(C=c, class_weight=weighting, max_iter=5000, random_state=SEED)
    )


def choose_params(x: np.ndarray, y: np.ndarray) -> tuple[Params, dict[Params, float]]:
    """The (C, weighting) with the best mean macro F1 over stratified folds of the train split, scoring the
    class the API reports (verdict.predicted_class: benign unless P(benign) < 0.5), not the argmax."""
    from sklearn.metrics import f1_score, make_scorer
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    def served_macro_f1(y_true: np.ndarray, probs: np.ndarray) -> float:
        return float(f1_score(y_true, predicted_classes(probs), average="macro"))

    scorer = make_scorer(served_macro_f1, response_method="predict_proba")
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=SEED)
    grid = [(c, w) for w in WEIGHTINGS for c in C_GRID]
    scores = {p: float(cross_val_score(pipeline(p), x, y, cv=folds, scoring=scorer).mean()) for p in grid}
    best = max(grid, key=lambda p: round(scores[p], 6))  # ties: the first in grid order (smaller C)
    return best, scores


def fold_scaler(fitted: Any) -> tuple[np.ndarray, np.ndarray]:
    """(weight, bias) of one linear layer on raw embeddings: W·((x-μ)/σ)+b = (W/σ)·x + (b - (W/σ)·μ)."""
    scaler, model = fitted[0], fitted[-1]
    order = [list(model.classes_).index(i) for i in range(len(CLASSES))]  # rows in CLASSES order
    weight = model.coef_[order] / scaler.scale_
    bias = model.intercept_[order] - weight @ scaler.mean_
    return weight.astype(np.float32), bias.astype(np.float32)


def train(examples: Sequence[corpus.Example]) -> tuple[head.Head, dict[str, object]]:
    import sklearn

    from inference.detection.embeddings import embed

    train_set = corpus.of_split(examples, corpus.TRAIN)
    x = embed([e.text for e in train_set])
    y = np.array([CLASSES.index(e.label) for e in train_set])
    started = time.perf_counter()
    params, scores = choose_params(x, y)
    fitted = pipeline(params).fit(x, y)
    fit_s = time.perf_counter() - started
    weight, bias = fold_scaler(fitted)
    training = {
        "corpus_sha256": corpus.fingerprint(examples),
        "train_examples": len(train_set),
        "model": "StandardScaler + multinomial LogisticRegression, folded into one linear layer",
        "C": params[0],
        "class_weight": params[1],
        "cv_macro_f1": round(scores[params], 4),
        "seed": SEED,
        "sklearn": sklearn.__version__,
    }
    return head.Head(weight=weight, bias=bias, training=training), {"scores": scores, "fit_s": fit_s}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        examples = corpus.load(Path(args.corpus))
    except (OSError, corpus.CorpusError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    trained, info = train(examples)
    Path(args.output).write_text(head.to_json(trained))
    print(f"cross-validated macro F1 on the train split ({FOLDS} folds):")
    for (c, weighting), score in info["scores"].items():  # type: ignore[union-attr]
        print(f"  C={c:<6g} class_weight={weighting!s:<9} {score:.3f}")
    t = trained.training
    print(
        f"trained on {t['train_examples']} examples with C={t['C']:g}, class_weight={t['class_weight']} "
        f"(fit + CV {info['fit_s']:.1f} s, total {time.perf_counter() - started:.1f} s) -> {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
