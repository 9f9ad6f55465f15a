"""The labelled corpus (corpus/*.txt) and its train/test split, fixed by each text's hash.

Files are `<label>.txt` or `<label>--<subset>.txt` (the subset names a slice worth reporting on its
own, e.g. benign security look-alikes). One example per line; `\\n` in a line is a newline; lines
starting with `#` are comments. An example is in the test split when the SHA-256 of its normalised
text falls in the test share: the split never depends on training, order, or which other examples
exist, so adding examples moves none of the old ones across the split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from inference.detection.labels import CLASSES

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
TEST_ONE_IN = 4  # 25% of the examples are held out
TRAIN, TEST = "train", "test"


class CorpusError(ValueError):
    """A corpus file that cannot be read as documented (names the file and line)."""


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    subset: str  # "" when the file has none
    source: str  # file:line, for error messages and reports

    @property
    def split(self) -> str:
        return split_of(self.text)


def normalise(text: str) -> str:
    """The form used for duplicate checks and the split: case and whitespace do not matter."""
    return " ".join(text.casefold().split())


def split_of(text: str) -> str:
    digest = hashlib.sha256(normalise(text).encode("utf-8")).digest()
    return TEST if int.from_bytes(digest[:8], "big") % TEST_ONE_IN == 0 else TRAIN


def label_of(path: Path) -> tuple[str, str]:
    label, _, subset = path.stem.partition("--")
    if label not in CLASSES:
        raise CorpusError(f"{path.name}: unknown label {label!r}; files are <label>[--subset].txt, {CLASSES}")
    return label, subset


def parse_lines(lines: Iterable[str], label: str, subset: str, name: str) -> list[Example]:
    examples = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith("#"):
            continue
        text = line.rstrip("\n").replace("\\n", "\n").strip()
        examples.append(Example(text=text, label=label, subset=subset, source=f"{name}:{number}"))
    return examples


def load(directory: Path = CORPUS_DIR) -> list[Example]:
    """Every example, file by file in name order."""
    files = sorted(directory.glob("*.txt"))
    if not files:
        raise CorpusError(f"no *.txt files in {directory}")
    examples: list[Example] = []
    for path in files:
        label, subset = label_of(path)
        examples += parse_lines(path.read_text(encoding="utf-8").splitlines(), label, subset, path.name)
    return examples


def of_split(examples: Iterable[Example], split: str) -> list[Example]:
    return [e for e in examples if e.split == split]


def fingerprint(examples: Iterable[Example]) -> str:
    """SHA-256 over the sorted (label, text) pairs: names the corpus a head was trained on."""
    digest = hashlib.sha256()
    for label, text in sorted((e.label, e.text) for e in examples):
        digest.update(f"{label}\t{text}\n".encode())
    return digest.hexdigest()
