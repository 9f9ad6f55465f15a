"""`python -m inference.detection.evaluate`: precision/recall/F1 of the shipped head on the held-out split.

Scores exactly what the API answers: the shipped weights file, the same embeddings the Triton
embedder computes, and verdict.py's decision (malicious when P(benign) < 0.5; the class is the
leading threat). Prints markdown tables: per class, malicious-vs-benign, false alarms per benign
subset, and how many test texts have a near-duplicate in the train split.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from common.settings import add_option, env_default
from inference.detection import corpus, head
from inference.detection.labels import BENIGN, CLASSES
from inference.detection.verdict import predicted_classes

NEAR_DUPLICATE_COSINE = 0.9


def split_choice(raw: str) -> str:
    if raw not in (corpus.TRAIN, corpus.TEST):
        raise argparse.ArgumentTypeError(f"must be train or test, got {raw!r}")
    return raw


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inference.detection.evaluate",
        description="Evaluate the shipped prompt-injection head on a corpus split (default: the held-out "
        "test split) and print markdown tables of precision, recall and F1.",
    )
    add_option(parser, "--corpus", "DETECT_CORPUS_DIR", str(corpus.CORPUS_DIR), "labelled corpus folder")
    add_option(parser, "--weights", "DETECT_WEIGHTS", str(head.WEIGHTS_PATH), "weights file to evaluate")
    add_option(parser, "--split", "DETECT_EVAL_SPLIT", corpus.TEST, "train|test", split_choice)
    parser.add_argument(
        "--show-errors",
        action="store_true",
        default=env_default("DETECT_EVAL_SHOW_ERRORS", False, lambda raw: raw.lower() in ("1", "true")),
        help="list every misclassified example (env DETECT_EVAL_SHOW_ERRORS=1)",
    )
    return parser


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def class_rows(truth: np.ndarray, predicted: np.ndarray) -> list[tuple[str, float, float, float, int]]:
    rows = []
    for index, name in enumerate(CLASSES):
        tp = int(((predicted == index) & (truth == index)).sum())
        fp = int(((predicted == index) & (truth != index)).sum())
        fn = int(((predicted != index) & (truth == index)).sum())
        rows.append((name, *prf(tp, fp, fn), int((truth == index).sum())))
    return rows


def binary_row(truth: np.ndarray, predicted: np.ndarray) -> tuple[str, float, float, float, int]:
    benign = CLASSES.index(BENIGN)
    is_bad, said_bad = truth != benign, predicted != benign
    tp, fp = int((is_bad & said_bad).sum()), int((~is_bad & said_bad).sum())
    fn = int((is_bad & ~said_bad).sum())
    return ("malicious (any threat) vs benign", *prf(tp, fp, fn), int(is_bad.sum()))


def table(rows: Sequence[tuple[str, float, float, float, int]]) -> str:
    lines = ["| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | {p:.3f} | {r:.3f} | {f:.3f} | {n} |" for name, p, r, f, n in rows]
    return "\n".join(lines)


def false_alarms(examples: Sequence[corpus.Example], predicted: np.ndarray) -> str:
    benign = CLASSES.index(BENIGN)
    lines = ["| benign subset | flagged as malicious |", "|---|---:|"]
    for subset in sorted({e.subset for e in examples if e.label == BENIGN}):
        mask = np.array([e.label == BENIGN and e.subset == subset for e in examples])
        flagged = int((predicted[mask] != benign).sum())
        lines.append(f"| {subset or '(none)'} | {flagged} / {int(mask.sum())} ({flagged / mask.sum():.1%}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        examples = corpus.load(Path(args.corpus))
        shipped = head.load(Path(args.weights))
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from inference.detection.embeddings import embed

    chosen = corpus.of_split(examples, args.split)
    others = corpus.of_split(examples, corpus.TEST if args.split == corpus.TRAIN else corpus.TRAIN)
    vectors = embed([e.text for e in chosen])
    truth = np.array([CLASSES.index(e.label) for e in chosen])
    predicted = predicted_classes(head.probabilities(shipped, vectors))

    stale = shipped.training.get("corpus_sha256") != corpus.fingerprint(examples)
    print(f"split: {args.split} ({len(chosen)} examples); weights: {args.weights}")
    if stale:
        print("WARNING: the weights were trained on another version of the corpus; retrain first")
    print(f"\n{table([*class_rows(truth, predicted), binary_row(truth, predicted)])}\n")
    print(false_alarms(chosen, predicted))
    nearest = (vectors @ embed([e.text for e in others]).T).max(axis=1)
    near = int((nearest >= NEAR_DUPLICATE_COSINE).sum())
    print(
        f"\n{near} of {len(chosen)} {args.split} texts have a neighbour with cosine >= "
        f"{NEAR_DUPLICATE_COSINE} in the other split"
    )
    if args.show_errors:
        print("\nmisclassified (truth -> predicted):")
        for example, t, p in zip(chosen, truth, predicted, strict=True):
            if t != p:
                print(f"  {CLASSES[t]} -> {CLASSES[p]}: {example.source}: {example.text[:110]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
