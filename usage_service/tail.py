"""Complete lines of the usage log after a committed position (file identity + byte offset).

Supported rotation: rename the file and have Envoy reopen its logs (admin POST /reopen_logs,
or SIGUSR1 … logrotate's `create` mode). The writer finishes the renamed file (found again by
its identity in the same folder, also after a restart) and then starts the new one at 0 once
the old file has been quiet for `settle_s` (Envoy may write into it until it reopens).
Not exact: copytruncate (lines written between the copy and the truncate are lost) and deleting
a file before the writer finished it. A partial last line waits until Envoy completes it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Position:
    identity: str  # "<st_dev>:<st_ino>" of the file the offset is in; "" before the first file
    offset: int  # bytes consumed: the end of the last complete line counted


@dataclass
class Chunk:
    start: Position
    end: Position
    lines: list[bytes] = field(default_factory=list)
    note: str = ""  # why the position moved without lines (rotation, truncation)


def identity(stat: os.stat_result) -> str:
    return f"{stat.st_dev}:{stat.st_ino}"


def complete_lines(data: bytes) -> tuple[list[bytes], int]:
    """The complete lines of `data` and how many bytes they take (the partial rest waits)."""
    cut = data.rfind(b"\n")
    if cut < 0:
        return [], 0
    return data[:cut].split(b"\n"), cut + 1


class LogTail:
    def __init__(self, path: Path, max_bytes: int = 4 << 20, settle_s: float = 5.0) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.settle_s = settle_s

    def _find(self, wanted: str) -> Path | None:
        """The file with identity `wanted` in the log's folder (the log itself, or renamed)."""
        try:
            entries = list(os.scandir(self.path.parent))
        except OSError:
            return None
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and identity(entry.stat()) == wanted:
                    return Path(entry.path)
            except OSError:
                continue
        return None

    def _read(self, path: Path, position: Position) -> tuple[bytes, os.stat_result] | None:
        try:
            with open(path, "rb") as file:
                stat = os.fstat(file.fileno())
                if identity(stat) != position.identity:
                    return None  # renamed between the look-up and the open: next round
                file.seek(position.offset)
                return file.read(self.max_bytes), stat
        except FileNotFoundError:
            return None

    def next_chunk(self, position: Position) -> Chunk | None:
        """The next lines to count (≤ max_bytes), a position change without lines, or None."""
        try:
            current = identity(os.stat(self.path))
        except FileNotFoundError:
            current = ""
        if not position.identity:
            return Chunk(position, Position(current, 0), note="first file") if current else None
        old = self.path if position.identity == current else self._find(position.identity)
        if old is None:  # our file is gone (deleted, not renamed): go on with the current one
            if not current:
                return None
            return Chunk(position, Position(current, 0), note=f"file {position.identity} gone")
        got = self._read(old, position)
        if got is None:
            return None
        data, stat = got
        if stat.st_size < position.offset:  # truncated in place (copytruncate)
            return Chunk(position, Position(position.identity, 0), note="file truncated")
        lines, used = complete_lines(data)
        if used == 0 and len(data) == self.max_bytes:  # one line longer than a chunk: skip it
            return Chunk(position, Position(position.identity, position.offset + len(data)), [data])
        if used:
            return Chunk(position, Position(position.identity, position.offset + used), lines)
        # At the end of a renamed file: move on once Envoy (which writes into it until it reopens
        # its logs) has left it alone for a while.
        if old != self.path and current and time.time() - stat.st_mtime >= self.settle_s:
            return Chunk(position, Position(current, 0), note=f"rotated from {old.name}")
        return None
