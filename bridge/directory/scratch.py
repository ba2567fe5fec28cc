"""The practitioners' table written by a process of its own while the importer indexes them.

On the whole register the build is two jobs of about the same size: writing 1.7 million
practitioner rows, and indexing their words. SQLite lets one connection write a database at a
time, so done in the importer's connection they take one processor core, one after the other,
while the parsing processes' cores sit idle. For a large import, the rows go instead to a
scratch database in the import's private folder (`Spill.folder`), written in this worker
process on another core while the importer's connection builds the word index; the importer
then copies the finished table into its `_next` table in one statement (`INSERT ... SELECT *`
between two tables of the same definition, which SQLite copies record by record without
decoding them).

The scratch database holds nothing that the spill cannot give again and goes with the import's
folder, so it is written without a journal and without syncing. Pure functions for the
worker process (`parallel.guarded_pool`): `start`, then `write` per batch, then `finish`.
"""

from __future__ import annotations

import sqlite3

from bridge.directory.generations import PRACTITIONER_COLUMNS
from bridge.directory.rows import ROW_FIELDS, ROW_SEP

SCHEMA = "scratch"
"""The name the importer's connection attaches the scratch database under."""

_db: sqlite3.Connection | None = None
_insert = ""


def start(path: str, table: str) -> None:
    """In the worker: open the scratch database, whose `table` the importer created."""
    global _db, _insert
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = OFF")
    db.execute("PRAGMA synchronous = OFF")
    db.execute("BEGIN")
    marks = ",".join("?" * len(ROW_FIELDS))
    _insert = f"INSERT INTO {table} ({PRACTITIONER_COLUMNS}) VALUES ({marks})"
    _db = db


def write(rows: str) -> None:
    """Append practitioner rows, in id order: `PractitionerRow`s joined by `ROW_SEP` (every
    field of the batch in one text, cut once here)."""
    assert _db is not None, "start() first"
    cells = rows.split(ROW_SEP)
    columns = [cells[i :: len(ROW_FIELDS)] for i in range(len(ROW_FIELDS))]
    _db.executemany(_insert, zip(*columns, strict=True))


def finish() -> None:
    """Commit and close: the table is complete on disk for the importer to copy."""
    global _db
    assert _db is not None, "start() first"
    db, _db = _db, None
    db.execute("COMMIT")
    db.close()
