"""The build's two halves, each in a process of its own: the word index and the rows.

On the whole register the build is two jobs of about the same size: writing 1.7 million
practitioner rows, and indexing their words. SQLite lets one connection write a database at a
time, so done in the importer's connection they take one processor core, one after the other,
and share it with the sorting of the rows, while the parsing processes' cores sit idle. For a
large import the importer only reads and sorts the rows, and hands them out:
- their words to an FTS5 index of the same definition in a scratch database in the import's
  private folder (`Spill.folder`), built by one worker process (`start`, `index`, `finish`);
  the importer then copies the finished index in: FTS5 keeps an index in ordinary tables of
  its own (segments, their terms, its settings), copied as they are, a fifth of the rows'
  size;
- the rows themselves to the `_next` table of the database being imported into, written by
  another worker process with a connection of its own (`start_rows`, `write_rows`,
  `finish_rows`), while the importer's connection writes nothing.

The scratch database holds nothing that the spill cannot give again and goes with the import's
folder, so it is written without a journal and without syncing. The workers come from
`parallel.guarded_pool` and die with the importer.
"""

from __future__ import annotations

import sqlite3

from bridge.directory.rows import STORED, field_columns

SCHEMA = "scratch"
"""The name the importer's connection attaches the scratch database under."""

_db: sqlite3.Connection | None = None
_table = ""
_index_insert = ""


def start(path: str, table: str, insert: str) -> None:
    """In the worker: open the scratch database, whose index `table` the importer created;
    `insert` adds one (rowid, words) to it."""
    global _db, _table, _index_insert
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = OFF")
    db.execute("PRAGMA synchronous = OFF")
    db.execute("BEGIN")
    _db, _table, _index_insert = db, table, insert


def index(words: str, after: int) -> None:
    """Index practitioners `after + 1`, `after + 2`, ...: their words, one line each."""
    assert _db is not None, "start() first"
    _db.executemany(_index_insert, enumerate(words.split("\n"), after + 1))


def finish() -> None:
    """Merge the index into one segment, commit and close: it is ready to be copied."""
    global _db
    assert _db is not None, "start() first"
    db, _db = _db, None
    db.execute(f"INSERT INTO {_table} ({_table}) VALUES ('optimize')")
    db.execute("COMMIT")
    db.close()


_rows: sqlite3.Connection | None = None
_rows_insert = ""


def start_rows(path: str, insert: str, busy_ms: int) -> None:
    """In the other worker: open the database being imported into; `insert` adds one row
    (`STORED_FIELDS`) to its `_next` table."""
    global _rows, _rows_insert
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("BEGIN IMMEDIATE")
    _rows, _rows_insert = db, insert


def write_rows(rows: str) -> None:
    """Append practitioner rows in id order: `PractitionerRow`s joined by `ROW_SEP`."""
    assert _rows is not None, "start_rows() first"
    _rows.executemany(_rows_insert, zip(*field_columns(rows)[STORED], strict=True))


def finish_rows() -> None:
    """Commit and close: the rows are in the `_next` table."""
    global _rows
    assert _rows is not None, "start_rows() first"
    db, _rows = _rows, None
    db.execute("COMMIT")
    db.close()
