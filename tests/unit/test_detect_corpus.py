"""The labelled corpus: readable, labels valid, no duplicates, a held-out split that training never sees."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from inference.detection import corpus
from inference.detection.labels import BENIGN, CLASSES, THREATS

EXAMPLES = corpus.load()


def test_every_file_names_a_known_label_and_every_class_has_examples() -> None:
    counts = Counter(e.label for e in EXAMPLES)
    assert set(counts) == set(CLASSES)
    assert all(counts[threat] >= 80 for threat in THREATS), counts
    assert counts[BENIGN] >= sum(counts[t] for t in THREATS), "benign text should be at least half"
    assert len(EXAMPLES) >= 600


def test_benign_look_alikes_are_a_subset_of_their_own() -> None:
    lookalikes = [e for e in EXAMPLES if e.subset == "security-lookalikes"]
    assert len(lookalikes) >= 100 and all(e.label == BENIGN for e in lookalikes)


def test_no_duplicates_within_or_across_splits() -> None:
    seen: dict[str, str] = {}
    for example in EXAMPLES:
        key = corpus.normalise(example.text)
        assert key not in seen, f"{example.source} duplicates {seen[key]}"
        seen[key] = example.source


def test_texts_are_clean_lines() -> None:
    for example in EXAMPLES:
        assert example.text == example.text.strip() and len(example.text) >= 10, example.source
        assert "\\n" not in example.text, f"{example.source}: escaped newline left in the text"


def test_split_is_fixed_by_content_and_holds_out_every_class() -> None:
    test = corpus.of_split(EXAMPLES, corpus.TEST)
    train = corpus.of_split(EXAMPLES, corpus.TRAIN)
    assert len(test) + len(train) == len(EXAMPLES)
    assert 0.18 <= len(test) / len(EXAMPLES) <= 0.32
    assert all(sum(e.label == c for e in test) >= 15 for c in CLASSES)
    # Case and spacing do not move a text across the split (the same normalisation as the duplicate check).
    for example in test[:20]:
        assert corpus.split_of("  " + example.text.upper().replace(" ", "   ") + "\n") == corpus.TEST


def test_shipped_weights_were_trained_on_this_corpus() -> None:
    from inference.detection import head

    training = head.load().training
    assert training["corpus_sha256"] == corpus.fingerprint(EXAMPLES), "corpus changed: retrain the head"
    assert training["train_examples"] == len(corpus.of_split(EXAMPLES, corpus.TRAIN))


def test_parse_lines_skips_comments_and_unescapes_newlines() -> None:
    lines = ["# comment", "", "first line\\nsecond line", "  spaced  "]
    parsed = corpus.parse_lines(lines, "jailbreak", "", "x.txt")
    assert [e.text for e in parsed] == ["first line\nsecond line", "spaced"]
    assert [e.source for e in parsed] == ["x.txt:3", "x.txt:4"]


def test_unknown_label_file_is_refused_with_its_name(tmp_path: Path) -> None:
    (tmp_path / "malware.txt").write_text("something\n")
    with pytest.raises(corpus.CorpusError, match=r"malware\.txt: unknown label 'malware'"):
        corpus.load(tmp_path)


def test_empty_corpus_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(corpus.CorpusError, match=r"no \*\.txt files"):
        corpus.load(tmp_path)


def test_fingerprint_ignores_file_order_but_not_labels() -> None:
    a = corpus.Example("some text", "benign", "", "a:1")
    b = corpus.Example("other text", "jailbreak", "", "b:1")
    assert corpus.fingerprint([a, b]) == corpus.fingerprint([b, a])
    relabelled = corpus.Example("other text", "prompt_injection", "", "b:1")
    assert corpus.fingerprint([a, b]) != corpus.fingerprint([a, relabelled])
