"""The PostgreSQL side of `bridge.directory.generations`: COPY into `_next`, index, rename.

`_next` tables are created `LIKE` the live ones; their constraints and indexes are recreated
after the bulk load under `<name>_next` and renamed back at the swap, so the schema stays the
one Alembic defines. An advisory lock keeps two imports from interleaving. DDL is
transactional here: the swap (drop, rename) commits or not as a whole, and searches running
meanwhile finish on the old tables.
"""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bridge.directory.generations import (
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
from bridge.directory.params import numbered
from bridge.directory.rows import ROW_SEP, STORED, Vocabulary
from bridge.directory.spill import DuplicateNameError, Spill

_SWAPPED = (PRACTITIONER, PLACE, WORD, TYPO)
_LOCK_KEY = 0x43414455  # "CADU": one directory import at a time per database
_STAGE = "directory_stage"


def _positional(sql: str, params: dict[str, Any]) -> tuple[str, list[Any]]:
    """`:name` parameters (shared SQL) to asyncpg's `$n`, with the values in that order."""
    text, names = numbered(sql)
    return text, [params[n] for n in names]


class PostgresGeneration(Staged):
    """Stages (`Spill`), builds and swaps one directory generation in PostgreSQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None
        self._pg: asyncpg.Connection | None = None
        self._spill: Spill | None = None
        self._constraints: dict[str, list[tuple[str, str]]] = {}
        self._indexes: dict[str, list[tuple[str, str]]] = {}

    @property
    def pg(self) -> asyncpg.Connection:
        assert self._pg is not None, "begin() first"
        return self._pg

    async def begin(self) -> None:
        self._conn = await self._engine.connect()
        raw = await self._conn.get_raw_connection()
        self._pg = raw.driver_connection
        if not await self.pg.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_KEY):
            await self.close()
            raise ImportBusyError("another import into this directory is running")
        await self._drop_next()
        for table in _SWAPPED:
            await self.pg.execute(f"CREATE TABLE {table}{NEXT} (LIKE {table} INCLUDING DEFAULTS)")
            self._constraints[table] = [
                (r["conname"], r["def"])
                for r in await self.pg.fetch(
                    "SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint "
                    "WHERE conrelid = $1::regclass AND contype <> 'n' ORDER BY conname",
                    table,
                )
            ]
            owned = {name for name, _ in self._constraints[table]}
            self._indexes[table] = [
                (r["indexname"], r["indexdef"])
                for r in await self.pg.fetch(
                    "SELECT indexname, indexdef FROM pg_indexes "
                    "WHERE schemaname = current_schema() AND tablename = $1 ORDER BY indexname",
                    table,
                )
                if r["indexname"] not in owned
            ]
        self._spill = Spill()

    async def _drop_next(self) -> None:
        for table in _SWAPPED:
            await self.pg.execute(f"DROP TABLE IF EXISTS {table}{NEXT}")

    async def build(self, vocabulary: Vocabulary) -> None:
        """Load practitioners in name order (ids 1..n), then constraints and indexes."""
        assert self._spill is not None
        pg = self.pg
        columns = [c.strip() for c in PRACTITIONER_COLUMNS.split(",")]
        await pg.execute(
            f"CREATE TEMP TABLE {_STAGE} (id integer, "
            + ", ".join(f"{c} text" for c in columns)
            + ")"
        )
        base = 0
        for batch in self._spill.sorted_batches():
            records = [(base + i, *row.split(ROW_SEP)[STORED]) for i, row in enumerate(batch, 1)]
            base += len(batch)
            await pg.copy_records_to_table(_STAGE, records=records, columns=["id", *columns])
        self._spill.close()
        listed = ", ".join(columns)
        await pg.execute(
            f"INSERT INTO {PRACTITIONER}{NEXT} (id, {listed}) "
            f"SELECT id, {listed.replace('tokens', 'tokens::tsvector')} FROM {_STAGE} ORDER BY id"
        )
        await pg.execute(f"DROP TABLE {_STAGE}")
        await pg.copy_records_to_table(
            f"{PLACE}{NEXT}", records=[(c,) for c in sorted(vocabulary.cities)], columns=["key"]
        )
        await pg.copy_records_to_table(
            f"{WORD}{NEXT}", records=list(vocabulary.words.items()), columns=["word", "head"]
        )
        await pg.copy_records_to_table(
            f"{TYPO}{NEXT}", records=list(vocabulary.typo_rows()), columns=["variant", "word"]
        )
        await pg.execute("SET maintenance_work_mem = '256MB'")
        for table in _SWAPPED:
            for name, definition in self._constraints[table]:
                try:
                    await pg.execute(
                        f"ALTER TABLE {table}{NEXT} ADD CONSTRAINT {name}{NEXT} {definition}"
                    )
                except asyncpg.UniqueViolationError:
                    raise DuplicateNameError(_DUPLICATE) from None
            for name, definition in self._indexes[table]:
                ddl, count = re.subn(
                    r"^(CREATE (?:UNIQUE )?INDEX )\S+ ON \S+ ",
                    rf"\g<1>{name}{NEXT} ON {table}{NEXT} ",
                    definition,
                )
                if count != 1:
                    raise RuntimeError(f"unexpected index definition {definition!r}")
                try:
                    await pg.execute(ddl)
                except asyncpg.UniqueViolationError:
                    raise DuplicateNameError(_DUPLICATE) from None
            await pg.execute(f"ANALYZE {table}{NEXT}")

    async def swap(self, facts: ImportFacts) -> SwapResult:
        pg = self.pg
        async with pg.transaction():
            practitioners = int(await pg.fetchval(f"SELECT count(*) FROM {PRACTITIONER}{NEXT}"))
            live = int(await pg.fetchval(f"SELECT count(*) FROM {PRACTITIONER}"))
            initial = live == 0
            params = {
                "source": facts.source,
                "format": facts.format,
                "started_at": facts.started_at,
                "finished_at": datetime.now(UTC),
                "lines": facts.lines,
                "records": facts.records,
                "practitioners": practitioners,
                "errors": facts.errors,
                "warnings": facts.warnings,
                "initial": initial,
            }
            import_id = int(await pg.fetchval(*_pos(INSERT_IMPORT, params)))
            counts = {"new": practitioners if initial else 0, "changed": 0, "disappeared": 0}
            if not initial:
                insert, counted = change_report_sql()
                await pg.execute(*_pos(insert, {"import_id": import_id}))
                rows = await pg.fetch(*_pos(counted, {"import_id": import_id}))
                counts |= {str(kind): int(n) for kind, n in rows}
            check_shrink(live, practitioners, counts["disappeared"], facts.max_shrink)
            await pg.execute(*_pos(UPDATE_IMPORT, {**counts, "import_id": import_id}))
            for table in _SWAPPED:
                await pg.execute(f"DROP TABLE {table}")
                await pg.execute(f"ALTER TABLE {table}{NEXT} RENAME TO {table}")
                for name, _ in self._constraints[table]:
                    await pg.execute(
                        f"ALTER TABLE {table} RENAME CONSTRAINT {name}{NEXT} TO {name}"
                    )
                for name, _ in self._indexes[table]:
                    await pg.execute(f"ALTER INDEX {name}{NEXT} RENAME TO {name}")
        return SwapResult(import_id, practitioners, initial=initial, **counts)

    async def discard(self) -> None:
        """Drop whatever this import built; the live directory is untouched. Always safe."""
        if self._pg is not None:
            with contextlib.suppress(asyncpg.PostgresError, OSError):
                await self._drop_next()
                await self.pg.execute(f"DROP TABLE IF EXISTS {_STAGE}")
        if self._spill is not None:
            self._spill.close()
        await self.close()

    async def close(self) -> None:
        if self._pg is not None:
            with contextlib.suppress(asyncpg.PostgresError, OSError):
                await self._pg.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
            self._pg = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()


_DUPLICATE = "the same RPPS appears under different names on lines apart from each other"


def _pos(sql: str, params: dict[str, Any]) -> tuple[Any, ...]:
    text, args = _positional(sql, params)
    return (text, *args)
