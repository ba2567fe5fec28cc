"""Build a new directory beside the live one, then swap it in: how imports stay atomic.

An import never writes to the tables searches read. It fills a staging table, builds
`directory_practitioner_next` (and the search index, and the place names) from it, and only
then, in ONE short transaction, records the change report and replaces the live tables by the
new ones. Until that commit searches read the previous directory (SQLite in WAL mode: readers
are never blocked; PostgreSQL: MVCC); a failed or interrupted import leaves `_next` tables
behind that the next import drops first, and nothing else.

The `_next` tables are cloned from the live ones' definitions (SQLite: their DDL; PostgreSQL:
`LIKE`, constraints and indexes recreated and renamed at the swap), so Alembic stays the one
place where the schema is defined.

Practitioners are numbered in name order (`id`), which is what makes result pages cheap (see
bridge.directory.search).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bridge.directory.rows import STORED_FIELDS, Vocabulary
from bridge.directory.spill import Bucketed, Merged, Spill

logger = logging.getLogger(__name__)

NEXT = "_next"
PRACTITIONER = "directory_practitioner"
PLACE = "directory_place"
FTS = "directory_fts"
WORD = "directory_word"
TYPO = "directory_typo"
PRACTITIONER_COLUMNS = ", ".join(STORED_FIELDS)
"""In `PractitionerRow` order, without the name key (`STORED`)."""
_COMPARED = ("id_type", "last_name", "first_name", "title", "profession_code", "profession")


class ImportBusyError(Exception):
    """Another import of the same directory is running."""


DEFAULT_MAX_SHRINK = 0.05
"""Share of the directory an import may remove unless the admin confirms (`--allow-shrink`)."""


class ImportRefusedError(Exception):
    """The new directory looks wrong (empty, or much smaller than the live one): not swapped."""


def check_shrink(live: int, practitioners: int, disappeared: int, max_shrink: float | None) -> None:
    """The safety valve, before the swap commits.

    A file without practitioners never replaces the directory (a header-only extract, an empty
    Bundle, a cut download). An import removing more than `max_shrink` of the live directory
    is refused with the figures, unless `max_shrink` is None (the admin confirmed).

    Raises:
        ImportRefusedError: with the message for the admin.
    """
    if practitioners == 0:
        raise ImportRefusedError("the file holds no practitioner")
    if max_shrink is None or live == 0 or disappeared <= live * max_shrink:
        return
    raise ImportRefusedError(
        f"this file would remove {disappeared:,} of the {live:,} practitioners of the "
        f"directory ({disappeared / live:.1%}, more than the {max_shrink:.0%} allowed): "
        "a cut download or the wrong file? If the register really shrank, import it again "
        "with --allow-shrink"
    )


@dataclass(frozen=True, slots=True)
class ImportFacts:
    """What the importer read, recorded with the change report."""

    source: str
    format: str
    started_at: Any  # datetime (aware)
    lines: int
    records: int
    errors: int
    warnings: int
    max_shrink: float | None = DEFAULT_MAX_SHRINK
    """See `check_shrink`; None when the admin allowed any shrink."""


@dataclass(frozen=True, slots=True)
class SwapResult:
    import_id: int
    practitioners: int
    new: int
    changed: int
    disappeared: int
    initial: bool


class Staged:
    """Both back ends stage a generation's practitioners the same way, in a `Spill` (set
    by their `begin`): rows this process gathered (`add`), rows the parsing processes
    wrote into its folder themselves (`spill_folder`, `added`)."""

    _spill: Spill | None = None

    @property
    def merged(self) -> list[Merged]:
        """Identifiers found under several names (known once `build` has run)."""
        return [] if self._spill is None else self._spill.merged

    async def add(self, batch: Bucketed) -> None:
        assert self._spill is not None
        self._spill.add(batch)

    @property
    def spill_folder(self) -> Path:
        assert self._spill is not None
        return self._spill.folder

    def added(self, count: int) -> None:
        assert self._spill is not None
        self._spill.added(count)


class Generation(Protocol):
    """One back end's way to stage, build and swap a directory generation."""

    @property
    def merged(self) -> list[Merged]: ...
    async def begin(self) -> None: ...
    async def add(self, batch: Bucketed) -> None: ...
    @property
    def spill_folder(self) -> Path:
        """Where other processes write rows as `Shard`s of this generation's spill."""
        ...

    def added(self, count: int) -> None:
        """`count` rows were written by another process's `Shard` (see `spill_folder`)."""
        ...

    async def build(self, vocabulary: Vocabulary) -> None: ...
    async def swap(self, facts: ImportFacts) -> SwapResult: ...
    async def discard(self) -> None: ...


# --- SQL shared by both back ends (plain SQL, same text) -----------------------------------


def change_report_sql() -> tuple[str, str]:
    """The INSERT … SELECT filling directory_change for import :import_id, and the SELECT of
    its (kind, count) rows.

    One pass over both generations joined by RPPS (new: only in `_next`; disappeared: only
    in the live table; changed: in both, some compared field differs); three separate
    passes read the 1.7 million rows of each side three times.
    """
    cur, nxt = PRACTITIONER, PRACTITIONER + NEXT
    differs = " OR ".join(f"c.{col} <> n.{col}" for col in (*_COMPARED, "activities"))
    insert = (
        "INSERT INTO directory_change (import_id, kind, rpps, last_name, first_name) "
        "SELECT :import_id, CASE WHEN c.rpps IS NULL THEN 'new' "
        "WHEN n.rpps IS NULL THEN 'disappeared' ELSE 'changed' END, "
        "coalesce(n.rpps, c.rpps), coalesce(n.last_name, c.last_name), "
        "coalesce(n.first_name, c.first_name) "
        f"FROM {nxt} n FULL JOIN {cur} c ON c.rpps = n.rpps "
        f"WHERE c.rpps IS NULL OR n.rpps IS NULL OR {differs}"
    )
    counts = (
        "SELECT kind, count(*) FROM directory_change WHERE import_id = :import_id GROUP BY kind"
    )
    return insert, counts


INSERT_IMPORT = (
    "INSERT INTO directory_import (source, format, started_at, finished_at, lines, records, "
    "practitioners, errors, warnings, new_count, changed_count, disappeared_count, initial) "
    "VALUES (:source, :format, :started_at, :finished_at, :lines, :records, :practitioners, "
    ":errors, :warnings, 0, 0, 0, :initial) RETURNING id"
)
UPDATE_IMPORT = (
    "UPDATE directory_import SET new_count = :new, changed_count = :changed, "
    "disappeared_count = :disappeared WHERE id = :import_id"
)


__all__ = [
    "DEFAULT_MAX_SHRINK",
    "FTS",
    "INSERT_IMPORT",
    "NEXT",
    "PLACE",
    "PRACTITIONER",
    "PRACTITIONER_COLUMNS",
    "TYPO",
    "UPDATE_IMPORT",
    "WORD",
    "Generation",
    "ImportBusyError",
    "ImportFacts",
    "ImportRefusedError",
    "Staged",
    "SwapResult",
    "change_report_sql",
    "check_shrink",
]
