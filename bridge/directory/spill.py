"""Putting 1.7 million practitioners in name order with a bounded amount of memory.

Practitioners are numbered in name order (see bridge.directory.search for why), but the
register comes in identifier order. Sorting it inside the database costs more than the rest of
the import (the sorter drags every row's payload through temporary files), so the importer
sorts it itself: rows are spilled to temporary files by the first letters of their name
(about two hundred buckets), then each bucket is read back, sorted in memory and handed to the
database in order. Memory is bounded by the largest bucket (a few percent of the register).

Rows are lines of text (bridge.directory.rows) in a private temporary directory, removed on
close; each process that makes rows writes files of its own there (`Shard`), and a bucket is
read back from all of them. The folder holds a lock for as long as its import lives; a killed
import cannot remove its folder (up to the size of the register), so each new spill first
removes the folders whose lock nobody holds any more (`sweep`).

One identifier, several names. The register lists a practitioner's activities one after
another, but the same identifier may come back later in the file, and its activities may
disagree on the spelling of the name ("MARTIN-LÉGER" and "MARTIN LEGER"). Rows with the same
name are merged when they meet in their bucket; rows with different names would land in
different places of the name order, so every identifier is also written, in a few bytes, to a
second set of files keyed by the identifier's last digits. Before the sorted rows are handed
out, these small files reveal the identifiers seen under more than one name (none in a clean
extract: nothing more is read then). Their rows are gathered, merged into the row whose
identity is the most complete (`identity_rank`), and that row alone is handed out, in its own
place. What was merged is listed in `Spill.merged` for the import report. The rule depends
only on the rows, never on the order they arrived in, so the serial and the parallel parsers
give the same directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from bridge.directory.rows import (
    ACTIVITIES,
    ACTIVITY_SEP,
    NAME_KEY,
    ROW_SEP,
    PractitionerRow,
    merge_rows,
)

_IDENTITY = slice(2, 8)  # id_type, last_name, first_name, title, profession code and label

_SECOND = ("c", "f", "i", "l", "o", "r", "u")  # bucket boundaries on a name's second letter


def bucket_of(name_key: str) -> str:
    """The bucket of a folded name: its first letter, then an eighth of the alphabet."""
    if not name_key:
        return ""
    second = name_key[1:2]
    return name_key[0] + str(sum(second >= bound for bound in _SECOND))


class DuplicateNameError(Exception):
    """One identifier appears with two different names on lines apart from each other."""


@dataclass(frozen=True, slots=True)
class Merged:
    """One identifier found under several names: the name kept and the others, as published."""

    rpps: str
    kept: tuple[str, str]
    others: tuple[tuple[str, str], ...]


def identity_rank(row: PractitionerRow) -> tuple[int, int, int]:
    """How complete a row's identity is; the highest wins a merge (ties: the first in name
    order, so that the choice never depends on where the rows were in the file).

    In order: the name used on more activity lines; more identity fields filled in; the longer
    name (accents and hyphens count: "MARTIN-LÉGER" over "MARTIN").
    """
    fields = row.split(ROW_SEP)
    activities = fields[ACTIVITIES].count(ACTIVITY_SEP) + 1 if fields[ACTIVITIES] else 0
    filled = sum(1 for value in fields[_IDENTITY] if value)
    return activities, filled, len(fields[3]) + len(fields[4])


def _best(rows: list[PractitionerRow]) -> PractitionerRow:
    return min(rows, key=lambda r: (tuple(-x for x in identity_rank(r)), r.partition(ROW_SEP)[0]))


PREFIX = "caducee-import-"
_OWNER = ".owner"
_YOUNG_SECONDS = 60  # a folder this young without its lock yet is being created


def sweep(directory: str | None = None) -> list[Path]:
    """Remove the folders of imports that died (their owner lock is free); which ones."""
    removed = []
    for folder in Path(directory or tempfile.gettempdir()).glob(PREFIX + "*"):
        try:
            handle = os.open(folder / _OWNER, os.O_RDWR)
        except FileNotFoundError:
            with contextlib.suppress(OSError):
                if time.time() - folder.stat().st_mtime > _YOUNG_SECONDS:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed.append(folder)
            continue
        except OSError:
            continue  # not ours to judge (another user's folder)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live import
        finally:
            os.close(handle)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


@dataclass(frozen=True, slots=True)
class Bucketed:
    """Rows cut the way the spill files them (`bucketed`), as text ready to append: per
    bucket, the rows' lines; per identifier key, the identifiers' lines; and how many rows."""

    rows: dict[str, str]
    ids: dict[str, str]
    count: int


def bucketed(rows: Iterable[PractitionerRow]) -> Bucketed:
    """Cut rows for `Shard.add`: a few large texts per batch to append, instead of a write
    per row. Pure: the parsing processes run it on the rows they gathered."""
    buckets: dict[str, list[PractitionerRow]] = {}
    by_prefix: dict[str, list[PractitionerRow]] = {}
    ids: dict[str, list[str]] = {}
    count = 0
    for row in rows:
        count += 1
        prefix = row[:2]
        found = by_prefix.get(prefix)
        if found is None:
            found = by_prefix[prefix] = buckets.setdefault(bucket_of(prefix), [])
        found.append(row)
        rpps = row.split(ROW_SEP, 2)[1]
        key = rpps[-2:]
        same = ids.get(key)
        if same is None:
            same = ids[key] = []
        same.append(rpps)
    return Bucketed(
        {k: "\n".join(v) + "\n" for k, v in buckets.items()},
        {k: "\n".join(v) + "\n" for k, v in ids.items()},
        count,
    )


class Shard:
    """One process's share of a spill: bucket and identifier files of its own in the spill's
    folder, which `Spill` reads back with every other shard's.

    The importer's process writes one (`Spill.add`); each parsing process of a large import
    writes its own (`parallel`), so that the rows it gathers go to disk from where they
    were made, instead of being sent to the importer's process to be written there.
    """

    def __init__(self, folder: Path, name: str) -> None:
        self._folder = folder
        self._name = name
        self._files: dict[str, TextIO] = {}

    def add(self, batch: Bucketed) -> None:
        for key, text in batch.rows.items():
            self._flush("b", key, text)
        for key, text in batch.ids.items():
            self._flush("i", key, text)

    def _flush(self, kind: str, key: str, text: str) -> None:
        handle = self._files.get(kind + key)
        if handle is None:
            path = self._folder / f"{kind}-{key.encode().hex()}.{self._name}"
            handle = self._files[kind + key] = path.open("a", encoding="utf-8", newline="")
        handle.write(text)

    def flush(self) -> None:
        """Everything written so far on disk, for another process to read."""
        for handle in self._files.values():
            handle.flush()

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()


class Spill:
    """Accumulates practitioner rows on disk; gives them back sorted by name, then RPPS."""

    def __init__(self, directory: str | None = None) -> None:
        sweep(directory)
        self._dir = Path(tempfile.mkdtemp(prefix=PREFIX, dir=directory))
        self._owner = os.open(self._dir / _OWNER, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._owner, fcntl.LOCK_EX)
        self._own = Shard(self._dir, "0")
        self.rows = 0
        self.merged: list[Merged] = []
        """Identifiers found under several names, once `sorted_batches` has started."""

    @property
    def folder(self) -> Path:
        """The import's private folder (removed on `close`, swept if the import dies)."""
        return self._dir

    def add(self, batch: Bucketed | list[PractitionerRow]) -> None:
        if isinstance(batch, list):
            batch = bucketed(batch)
        self._own.add(batch)
        self.rows += batch.count

    def added(self, count: int) -> None:
        """`count` rows were written by another process's `Shard` in this spill's folder."""
        self.rows += count

    def _shards(self, kind: str) -> dict[str, list[Path]]:
        """Every shard's files of one kind ("b" rows, "i" identifiers), by bucket key."""
        self._own.close()
        found: dict[str, list[Path]] = {}
        for path in self._dir.glob(kind + "-*.*"):
            key = bytes.fromhex(path.name[2:].partition(".")[0]).decode()
            found.setdefault(key, []).append(path)
        return found

    @staticmethod
    def _read(paths: list[Path]) -> list[str]:
        """The lines of one bucket's files (every shard's), each file then removed."""
        lines: list[str] = []
        for path in sorted(paths):
            lines += path.read_text(encoding="utf-8").split("\n")
            lines.pop()  # after the last newline
            path.unlink()
        return lines

    def _repeated_ids(self) -> set[str]:
        """Identifiers that came in more than one row (rows of one name are merged later, so
        this over-counts; `_gather` keeps only those with several names)."""
        repeated: set[str] = set()
        for paths in self._shards("i").values():
            ids = self._read(paths)
            if len(set(ids)) != len(ids):
                ids.sort()
                repeated.update(a for a, b in itertools.pairwise(ids) if a == b)
        return repeated

    def _gather(self, repeated: set[str]) -> dict[str, PractitionerRow]:
        """The merged row of each identifier under several names, keyed by the name key of
        the row that keeps its place (read from the bucket files, which stay in place)."""
        found: dict[str, list[PractitionerRow]] = {}
        for paths in self._shards("b").values():
            for path in paths:
                with path.open(encoding="utf-8", newline="") as bucket:
                    for row in bucket:
                        rpps = row.split(ROW_SEP, 2)[1]
                        if rpps in repeated:
                            found.setdefault(rpps, []).append(row.rstrip("\n"))
        winners: dict[str, PractitionerRow] = {}
        for rpps, rows in sorted(found.items()):
            by_name: dict[str, PractitionerRow] = {}
            # In the order of the rows' text (name key first), not in the order the
            # processes happened to write them, nor the file's.
            for row in sorted(rows):
                key = row.partition(ROW_SEP)[0]
                by_name[key] = merge_rows(by_name[key], row) if key in by_name else row
            if len(by_name) < 2:
                continue
            kept = _best(list(by_name.values()))
            merged = kept
            for key in sorted(by_name):
                if by_name[key] is not kept:
                    merged = merge_rows(merged, by_name[key])
            winners[kept.partition(ROW_SEP)[0]] = merged
            for key in by_name:
                winners.setdefault(key, "")
            names = {key: tuple(by_name[key].split(ROW_SEP)[3:5]) for key in by_name}
            kept_key = kept.partition(ROW_SEP)[0]
            self.merged.append(
                Merged(
                    rpps,
                    (names[kept_key][0], names[kept_key][1]),
                    tuple((n[0], n[1]) for k, n in sorted(names.items()) if k != kept_key),
                )
            )
        return winners

    def sorted_batches(self) -> Iterator[list[PractitionerRow]]:
        """Every row, in (name, RPPS) order, one bucket per batch; a practitioner whose lines
        were apart in the file comes back as one row."""
        repeated = self._repeated_ids()
        replaced = self._gather(repeated) if repeated else {}
        buckets = self._shards("b")
        for key in sorted(buckets):
            rows = self._read(buckets[key])
            rows.sort()  # the name key leads each line: string order is name order
            # Only an identifier that came more than once can have rows to merge: a clean
            # extract (every identifier once) skips the pass over 1.7 million rows.
            merged = _merge_adjacent(rows) if repeated else rows
            if replaced:
                merged = _replace(merged, replaced)
            yield merged

    def close(self) -> None:
        self._own.close()
        shutil.rmtree(self._dir, ignore_errors=True)
        if self._owner >= 0:
            os.close(self._owner)
            self._owner = -1


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


def _replace(
    rows: list[PractitionerRow], replaced: dict[str, PractitionerRow]
) -> list[PractitionerRow]:
    """Rows of identifiers under several names: the kept one merged, the others left out."""
    out: list[PractitionerRow] = []
    for row in rows:
        swap = replaced.get(row.partition(ROW_SEP)[0])
        if swap is None:
            out.append(row)
        elif swap:
            out.append(swap)
    return out


__all__ = [
    "Bucketed",
    "DuplicateNameError",
    "Merged",
    "Shard",
    "Spill",
    "bucket_of",
    "bucketed",
    "identity_rank",
    "sweep",
]
