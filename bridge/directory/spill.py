"""Putting 1.7 million practitioners in name order with a bounded amount of memory.

Practitioners are numbered in name order (see bridge.directory.search for why), but the
register comes in identifier order. Sorting it inside the database costs more than the rest of
the import (the sorter drags every row's payload through temporary files), so the importer
sorts it itself: rows are spilled to temporary files by the first letters of their name
(about two hundred buckets), then each bucket is read back, sorted in memory and handed to the
database in order. Memory is bounded by the largest bucket (a few percent of the register).

Rows are lines of text (bridge.directory.rows) in a private temporary directory, removed on
close.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from bridge.directory.rows import NAME_KEY, ROW_SEP, PractitionerRow, merge_rows

_FLUSH_ROWS = 4096
_SECOND = ("c", "f", "i", "l", "o", "r", "u")  # bucket boundaries on a name's second letter


def bucket_of(name_key: str) -> str:
    """The bucket of a folded name: its first letter, then an eighth of the alphabet."""
    if not name_key:
        return ""
    second = name_key[1:2]
    return name_key[0] + str(sum(second >= bound for bound in _SECOND))


class DuplicateNameError(Exception):
    """One identifier appears with two different names on lines apart from each other."""


class Spill:
    """Accumulates practitioner rows on disk; gives them back sorted by name, then RPPS."""

    def __init__(self, directory: str | None = None) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="caducee-import-", dir=directory))
        self._files: dict[str, TextIO] = {}
        self._buffers: dict[str, list[PractitionerRow]] = {}
        self.rows = 0

    def add(self, rows: list[PractitionerRow]) -> None:
        buffers = self._buffers
        for row in rows:
            buffer = buffers.get(row[:2])
            if buffer is None:
                buffer = buffers[row[:2]] = self._bucket(row[:2])
            buffer.append(row)
            if len(buffer) >= _FLUSH_ROWS:
                self._flush(bucket_of(row[:2]), buffer)
        self.rows += len(rows)

    def _bucket(self, prefix: str) -> list[PractitionerRow]:
        """The buffer of the prefix's bucket (prefixes of one bucket share one buffer)."""
        key = bucket_of(prefix)
        for other, buffer in self._buffers.items():
            if bucket_of(other) == key:
                return buffer
        return []

    def _flush(self, key: str, buffer: list[PractitionerRow]) -> None:
        handle = self._files.get(key)
        if handle is None:
            path = self._dir / f"b{len(self._files)}"
            handle = self._files[key] = path.open("w", encoding="utf-8", newline="")
        handle.write("\n".join(buffer))
        handle.write("\n")
        buffer.clear()

    def sorted_batches(self) -> Iterator[list[PractitionerRow]]:
        """Every row, in (name, RPPS) order, one bucket per batch; a practitioner whose lines
        were apart in the file comes back as one row."""
        for prefix, buffer in self._buffers.items():
            if buffer:
                self._flush(bucket_of(prefix), buffer)
        for key in sorted(self._files):
            handle = self._files.pop(key)
            handle.close()
            path = Path(handle.name)
            rows = path.read_text(encoding="utf-8").split("\n")
            path.unlink()
            rows.pop()  # after the last newline
            rows.sort()  # the name key leads each line: string order is name order
            yield _merge_adjacent(rows)

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()
        shutil.rmtree(self._dir, ignore_errors=True)


def _merge_adjacent(rows: list[PractitionerRow]) -> list[PractitionerRow]:
    """Rows of the same RPPS are adjacent once sorted (same name key): merge them into one."""
    merged: list[PractitionerRow] = []
    previous = ""
    for row in rows:
        key = row.partition(ROW_SEP)[NAME_KEY]
        if key == previous:
            merged[-1] = merge_rows(merged[-1], row)
        else:
            merged.append(row)
            previous = key
    return merged


__all__ = ["DuplicateNameError", "Spill", "bucket_of"]
