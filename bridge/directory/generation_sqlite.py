"""The SQLite side of `bridge.directory.generations`: stage in TEMP, build `_next`, rename.

The import uses its own connection (not the engine's pool): it needs explicit transactions,
a TEMP staging table that lives as long as the connection, and a lock file so that two
imports of the same database cannot interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import sqlite3
from collections import deque
from datetime import UTC, datetime

import aiosqlite

from bridge.directory import parallel, scratch
from bridge.directory.generations import (
    FTS,
    INSERT_IMPORT,
    NEXT,
    PLACE,
    PRACTITIONER,
    PRACTITIONER_COLUMNS,
    TYPO,
    UPDATE_IMPORT,
    WORD,
    ImportBusyError,
    ImportFacts,
    Staged,
    SwapResult,
    change_report_sql,
    check_shrink,
)
from bridge.directory.rows import (
    ROW_SEP,
    STORED,
    STORED_FIELDS,
    TOKENS,
    Vocabulary,
    field_columns,
)
from bridge.directory.spill import DuplicateNameError, Spill

_SWAPPED = (PRACTITIONER, PLACE, FTS, WORD, TYPO)
_COMPARE_INDEX = "directory_practitioner_next_compare"
_INCREMENTAL = 2  # PRAGMA auto_vacuum
_HASH_BYTES = 256 * 1024 * 1024
_COMPARE_CACHE_KIB = 256 * 1024
SCRATCH_MIN_ROWS = 200_000
"""From this many practitioners on, their rows are written and their words indexed by
processes of their own (`scratch`); below, starting them would cost more than it saves."""
_BATCHES_IN_FLIGHT = 2
_BUSY_MS = 30_000
_INSERT_PRACTITIONER = (
    f"INSERT INTO {PRACTITIONER}{NEXT} ({PRACTITIONER_COLUMNS}) "
    f"VALUES ({','.join('?' * len(STORED_FIELDS))})"
)
_INSERT_WORDS = f"INSERT INTO {FTS}{NEXT} (rowid, tokens) VALUES (?, ?)"
"""The same in the scratch database's connection (its index has the same name there)."""


class SqliteGeneration(Staged):
    """Stages (`Spill`), builds and swaps one directory generation in an SQLite file."""

    def __init__(self, path: str) -> None:
        if not path or path == ":memory:" or path.startswith("file:"):
            raise ValueError("the directory import needs an SQLite database file")
        self._path = path
        self._db: aiosqlite.Connection | None = None
        self._lock: int | None = None
        self._spill: Spill | None = None
        self._indexes: list[str] = []
        self._fts_ddl = ""
        self._written = 0

    @property
    def db(self) -> aiosqlite.Connection:
        assert self._db is not None, "begin() first"
        return self._db

    async def begin(self) -> None:
        # The lock follows the database file, not the path as typed: through a symlink or
        # another spelling of its path, a second import still finds it taken.
        real = os.path.realpath(self._path)  # noqa: ASYNC240 (no I/O wait worth a thread)
        lock = os.open(real + ".import-lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            raise ImportBusyError("another import into this directory is running") from None
        self._lock = lock
        self._db = await aiosqlite.connect(self._path, isolation_level=None)
        for pragma in (f"busy_timeout={_BUSY_MS}", "journal_mode=WAL", "synchronous=NORMAL"):
            await self.db.execute(f"PRAGMA {pragma}")
        await self._drop_next()
        await self._compactable()
        await self._clone()
        self._spill = Spill()

    async def _compactable(self) -> None:
        """Switch the file to incremental auto-vacuum once (a VACUUM, cheap before the first
        import), so that each import can give back the pages of the generation it replaced."""
        async with self.db.execute("PRAGMA auto_vacuum") as cursor:
            mode = int((await cursor.fetchone() or (0,))[0])
        if mode != _INCREMENTAL:
            await self.db.execute(f"PRAGMA auto_vacuum = {_INCREMENTAL}")
            await self.db.execute("VACUUM")

    async def _drop_next(self) -> None:
        for table in _SWAPPED:
            await self.db.execute(f"DROP TABLE IF EXISTS {table}{NEXT}")

    async def _clone(self) -> None:
        """Create each `_next` table from the live table's own definition (indexes later)."""
        await self.db.execute("BEGIN")
        self._indexes = []
        for table in _SWAPPED:
            async with self.db.execute(
                "SELECT type, sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL",
                (table,),
            ) as cursor:
                found = list(await cursor.fetchall())
            tables = [sql for kind, sql in found if kind == "table"]
            self._indexes += [sql for kind, sql in found if kind == "index"]
            ddl, count = re.subn(
                rf'^(CREATE (?:VIRTUAL )?TABLE )"?{table}"?', rf"\g<1>{table}{NEXT}", tables[0]
            )
            if count != 1:
                raise RuntimeError(f"{table}: unexpected definition {tables[0][:60]!r}")
            if table == FTS:
                self._fts_ddl = ddl
            await self.db.execute(ddl)
        await self._fts_settings("main")
        await self.db.execute("COMMIT")

    async def _fts_settings(self, schema: str) -> None:
        """The settings of the word index being built (kept with it: the live one has them)."""
        table = f"{schema}.{FTS}{NEXT}"
        await self.db.execute(f"INSERT INTO {table} ({FTS}{NEXT}, rank) VALUES ('automerge', 0)")
        # FTS5 writes its pending words out as a new segment every megabyte by default, and
        # the final 'optimize' then merges hundreds of them: held in memory up to the size
        # of the whole register's index, the words go out in one segment, in half the time.
        with contextlib.suppress(sqlite3.OperationalError):  # an SQLite without the option
            await self.db.execute(
                f"INSERT INTO {table} ({FTS}{NEXT}, rank) VALUES ('hashsize', {_HASH_BYTES})"
            )

    async def build(self, vocabulary: Vocabulary) -> None:
        """Write the practitioners in name order (ids 1..n), then index their words.

        A large import has its rows written and its words indexed by two processes of their
        own (`scratch`) while this one sorts the rows; the finished index is copied in.
        """
        assert self._spill is not None
        db = self.db
        beside = self._spill.rows >= SCRATCH_MIN_ROWS
        if beside:
            path = str(self._spill.folder / "index.db")
            # Attached and created before any transaction (SQLite attaches outside one).
            await db.execute(f"ATTACH DATABASE ? AS {scratch.SCHEMA}", (path,))
            await db.execute(self._fts_ddl.replace(" TABLE ", f" TABLE {scratch.SCHEMA}.", 1))
            await self._fts_settings(scratch.SCHEMA)
            # The rows' process writes this database meanwhile: this connection holds no
            # transaction until it has committed.
            await self._write_beside(path)
            await db.execute("BEGIN")
            await self._copy_index()
        else:
            await db.execute("BEGIN")
            await self._write_here()
            await db.execute(f"INSERT INTO {FTS}{NEXT} ({FTS}{NEXT}) VALUES ('optimize')")
        await db.executemany(
            f"INSERT INTO {PLACE}{NEXT} (key) VALUES (?)", [(c,) for c in sorted(vocabulary.cities)]
        )
        # Both are WITHOUT ROWID tables keyed by what they are searched by: inserted in key
        # order, each row lands at the end of its b-tree.
        await db.executemany(
            f"INSERT INTO {WORD}{NEXT} (word, head) VALUES (?, ?)", sorted(vocabulary.words.items())
        )
        await db.executemany(
            f"INSERT INTO {TYPO}{NEXT} (variant, word) VALUES (?, ?)",
            sorted(vocabulary.typo_rows()),
        )
        await db.execute("COMMIT")
        if beside:
            await db.execute(f"DETACH DATABASE {scratch.SCHEMA}")
        self._spill.close()

    async def _write_here(self) -> None:
        """Rows and words through this connection, a bucket being written while the next one
        is read and sorted."""
        assert self._spill is not None
        pending: asyncio.Future[None] | None = None
        base = 0
        for batch in self._spill.sorted_batches():
            if pending is not None:
                await pending
            # `id` is the rowid: numbered in insertion order, that is name order.
            pending = asyncio.ensure_future(self._write(batch, base))
            base += len(batch)
        if pending is not None:
            await pending
        self._written = base

    async def _write_beside(self, path: str) -> None:
        """Words to the indexing process, rows to the writing process, in name order."""
        assert self._spill is not None
        loop = asyncio.get_running_loop()
        sent: deque[asyncio.Future[None]] = deque()
        base = 0
        index_args = (path, f"{FTS}{NEXT}", _INSERT_WORDS)
        rows_args = (self._path, _INSERT_PRACTITIONER, _BUSY_MS)
        with (
            parallel.guarded_pool(1, scratch.start, index_args) as indexer,
            parallel.guarded_pool(1, scratch.start_rows, rows_args) as writer,
        ):
            try:
                for batch in self._spill.sorted_batches():
                    # Each process takes its batches in the order they are sent: both number
                    # the practitioners in name order. A row's words are its last field.
                    words = "\n".join(row[row.rfind(ROW_SEP) + 1 :] for row in batch)
                    sent.append(loop.run_in_executor(indexer, scratch.index, words, base))
                    rows = ROW_SEP.join(batch)
                    sent.append(loop.run_in_executor(writer, scratch.write_rows, rows))
                    base += len(batch)
                    while len(sent) > 2 * _BATCHES_IN_FLIGHT:
                        await sent.popleft()
                while sent:
                    await sent.popleft()
                self._written = base
                await asyncio.gather(
                    loop.run_in_executor(indexer, scratch.finish),
                    loop.run_in_executor(writer, scratch.finish_rows),
                )
            finally:
                for future in sent:
                    future.cancel()

    async def _copy_index(self) -> None:
        """The index built in the scratch database, into this one's `_next` index: FTS5 keeps
        an index in ordinary tables of its own (its shadow tables: segments, their terms,
        its settings), which are copied whole, replacing those of the empty one."""
        async with self.db.execute(
            f"SELECT name FROM {scratch.SCHEMA}.sqlite_master WHERE type = 'table' "
            "AND substr(name, 1, ?) = ?",
            (len(FTS + NEXT) + 1, f"{FTS}{NEXT}_"),
        ) as cursor:
            shadows = [str(name) for (name,) in await cursor.fetchall()]
        if not shadows:
            raise RuntimeError("the scratch database holds no index")
        for name in shadows:
            await self.db.execute(f"DELETE FROM main.{name}")
            await self.db.execute(f"INSERT INTO main.{name} SELECT * FROM {scratch.SCHEMA}.{name}")

    async def _write(self, batch: list[str], after: int) -> None:
        columns = field_columns(ROW_SEP.join(batch))
        await self.db.executemany(_INSERT_PRACTITIONER, zip(*columns[STORED], strict=True))
        # The words go to the index from here rather than read back from the table just
        # written (a second pass over the whole directory's pages).
        await self.db.executemany(_INSERT_WORDS, enumerate(columns[TOKENS], after + 1))

    async def swap(self, facts: ImportFacts) -> SwapResult:
        db = self.db
        await db.execute("BEGIN IMMEDIATE")
        try:
            # As many as were written (counting them again read the whole new table).
            practitioners = self._written
            async with db.execute(f"SELECT count(*) FROM {PRACTITIONER}") as cursor:
                live = int((await cursor.fetchone() or (0,))[0])
            initial = live == 0
            params = {
                "source": facts.source,
                "format": facts.format,
                "started_at": facts.started_at.isoformat(sep=" "),
                "finished_at": datetime.now(UTC).isoformat(sep=" "),
                "lines": facts.lines,
                "records": facts.records,
                "practitioners": practitioners,
                "errors": facts.errors,
                "warnings": facts.warnings,
                "initial": initial,
            }
            async with db.execute(INSERT_IMPORT, params) as cursor:
                import_id = int((await cursor.fetchone() or (0,))[0])
            counts = {"new": practitioners if initial else 0, "changed": 0, "disappeared": 0}
            if not initial:
                # The comparison reads both generations by RPPS, in no order of the pages:
                # with SQLite's default 2 MB of cache it read most pages several times.
                await db.execute(f"PRAGMA cache_size = -{_COMPARE_CACHE_KIB}")
                # Comparing with the live directory needs the new practitioners indexed by
                # RPPS; the index under its real name is built after the swap (SQLite cannot
                # rename one), this one goes with the renamed table's drop below.
                await db.execute(
                    f"CREATE UNIQUE INDEX {_COMPARE_INDEX} ON {PRACTITIONER}{NEXT} (rpps)"
                )
                insert, counted = change_report_sql()
                await db.execute(insert, {"import_id": import_id})
                async with db.execute(counted, {"import_id": import_id}) as cursor:
                    counts |= {str(kind): int(n) for kind, n in await cursor.fetchall()}
                await db.execute(f"DROP INDEX {_COMPARE_INDEX}")
            check_shrink(live, practitioners, counts["disappeared"], facts.max_shrink)
            await db.execute(UPDATE_IMPORT, {**counts, "import_id": import_id})
            for table in _SWAPPED:
                await db.execute(f"DROP TABLE {table}")
                await db.execute(f"ALTER TABLE {table}{NEXT} RENAME TO {table}")
            try:
                for ddl in self._indexes:
                    await db.execute(ddl)
            except sqlite3.IntegrityError:
                raise DuplicateNameError(
                    "the same RPPS appears under different names on lines apart from each other"
                ) from None
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        # Give the replaced generation's pages back to the file system (without this the
        # file grew by a directory's size at every import), then fold the write-ahead log
        # back into the database file rather than leave a log the size of the directory
        # (best effort: readers may hold it, the next checkpoint finishes the job).
        with contextlib.suppress(sqlite3.Error):
            # Run to completion (a statement step frees one page; a script steps to the end).
            await db.executescript("PRAGMA incremental_vacuum;")
            await db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return SwapResult(import_id, practitioners, initial=initial, **counts)

    async def discard(self) -> None:
        """Drop whatever this import built; the live directory is untouched. Always safe."""
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error, ValueError):
                if self._db.in_transaction:
                    await self._db.execute("ROLLBACK")
                await self._drop_next()
            await self.close()
        if self._spill is not None:
            self._spill.close()

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()
        if self._lock is not None:
            lock, self._lock = self._lock, None
            os.close(lock)
