"""Putting 1.7 million practitioners in name order with a bounded amount of memory.

Practitioners are numbered in name order (see bridge.directory.search for why), but the
register comes in identifier order. Sorting it inside the database costs more than the rest of
the import (the sorter drags every row's payload through temporary files), so the importer
sorts it itself: rows are spilled to temporary files by the first letters of their name
(81 buckets), then each bucket is read back, sorted in memory and handed to the database in
order. Memory is bounded by the largest bucket (a few percent of the register).

Files are written with `pickle` (plain tuples of strings; it reads back several times faster
than `marshal`) in a private temporary directory, removed on close.
"""

from __future__ import annotations

import pickle
import shutil
import tempfile
from collections.abc import Iterator
from operator import itemgetter
from pathlib import Path
from typing import BinaryIO

from bridge.directory.rows import ACTIVITY_SEP, PractitionerRow, merge_rows

_FLUSH_ROWS = 4096
_NAME_KEY = 7
_by_name_key = itemgetter(_NAME_KEY)  # the key ends with the RPPS: (name, RPPS) order


def bucket_of(name_key: str) -> str:
    """The bucket of a folded name: first character, then a third of the alphabet."""
    if not name_key:
        return ""
    second = name_key[1:2]
    part = "0" if second < "i" else "1" if second < "q" else "2"
    return name_key[0] + part


class DuplicateNameError(Exception):
    """One identifier appears with two different names on lines apart from each other."""


class Spill:
    """Accumulates practitioner rows on disk; gives them back sorted by name, then RPPS."""

    def __init__(self, directory: str | None = None) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="caducee-import-", dir=directory))
        self._files: dict[str, BinaryIO] = {}
        self._buffers: dict[str, list[PractitionerRow]] = {}
        self.rows = 0

    def add(self, rows: list[PractitionerRow]) -> None:
        buffers = self._buffers
        for row in rows:
            key = bucket_of(row[_NAME_KEY])
            buffer = buffers.get(key)
            if buffer is None:
                buffer = buffers[key] = []
            buffer.append(row)
            if len(buffer) >= _FLUSH_ROWS:
                self._flush(key, buffer)
        self.rows += len(rows)

    def _flush(self, key: str, buffer: list[PractitionerRow]) -> None:
        handle = self._files.get(key)
        if handle is None:
            handle = self._files[key] = (self._dir / f"b{len(self._files)}").open("wb")
        pickle.dump(buffer, handle, protocol=5)
        buffer.clear()

    def sorted_batches(self) -> Iterator[list[PractitionerRow]]:
        """Every row, in (name, RPPS) order, one bucket per batch; a practitioner whose lines
        were apart in the file comes back as one row."""
        for key, buffer in self._buffers.items():
            if buffer:
                self._flush(key, buffer)
        for key in sorted(self._files):
            handle = self._files.pop(key)
            handle.close()
            rows: list[PractitionerRow] = []
            with Path(handle.name).open("rb") as reader:
                while True:
                    try:
                        rows.extend(pickle.load(reader))  # noqa: S301 - our own temporary file
                    except EOFError:
                        break
            Path(handle.name).unlink()
            rows.sort(key=_by_name_key)
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
        if row[0] == previous:
            merged[-1] = merge_rows(merged[-1], row)
        else:
            merged.append(row)
            previous = row[0]
    return merged


__all__ = ["ACTIVITY_SEP", "DuplicateNameError", "Spill", "bucket_of"]
