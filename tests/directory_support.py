"""Helpers for the directory tests: a bridge database on each back end, small extracts.

The same tests run on SQLite and on PostgreSQL (`backend` parameter); PostgreSQL tests skip,
saying why, when no server answers (CADUCEE_TEST_POSTGRES_URL or 127.0.0.1:5432).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import sqlalchemy as sa

from bridge.db import Database, open_database
from bridge.directory.search import SearchPage, search_directory
from tests.bench.rpps_synth import DEMO_PRACTITIONERS, HEADER_52, generate, header_line
from tests.bot_commands_support import fresh_postgres_database

BACKENDS = ["sqlite", "postgres"]

# The example line of the register's documentation (fictional person, valid Luhn).
EXAMPLE_LINE = (
    "8|10009999995|810009999995|DR|Docteur|MME|Madame|MARTIN-LÉGER|ANNE-SOPHIE|10|Médecin|C|"
    "Civil|S|Spécialité ordinale|SM04|Cardiologie et maladies vasculaires|L|Libéral|||||"
    "C1000999999500|CABINET DR MARTIN-LÉGER||||12||R|Rue|DE LA RÉPUBLIQUE||69002 LYON|69002|"
    "69382|Lyon 2e Arrondissement|||||||69|Rhône||CNOM/CNOM/CNOM|SA07|Cabinet individuel|||"
)


@asynccontextmanager
async def directory_database(backend: str, folder: Path) -> AsyncIterator[Database]:
    """An empty, migrated bridge database on `backend` (a new PostgreSQL database each time)."""
    if backend == "sqlite":
        db = await open_database(f"sqlite:///{folder / 'bridge.db'}", create=True)
        try:
            yield db
        finally:
            await db.close()
        return
    async for url in fresh_postgres_database():
        db = await open_database(url, create=True)
        try:
            yield db
        finally:
            await db.close()


def initialised_sqlite(path: Path) -> str:
    """What `caducee bridge init` leaves at `path`: an empty, migrated bridge database; its
    URL. No directory command creates one (call from synchronous tests only)."""
    import asyncio

    url = f"sqlite:///{path}"

    async def create() -> None:
        await (await open_database(url, create=True)).close()

    asyncio.run(create())
    return url


def demo_extract(folder: Path, *, lines: int = 1500, seed: int = 7) -> Path:
    """A synthetic extract with the demo's practitioners first (MARTIN-LÉGER, DUPONT, ...)."""
    path = folder / "PS_LibreAcces_Personne_activite_202601051200.txt"
    generate(path, lines=lines, seed=seed, fixed=DEMO_PRACTITIONERS)
    return path


def write_lines(path: Path, lines: list[str], header: list[str] | None = None) -> Path:
    path.write_text(header_line(header or list(HEADER_52)) + "".join(f"{x}\n" for x in lines))
    return path


async def search(db: Database, query: str, *, limit: int = 10, offset: int = 0) -> SearchPage:
    async with db.sessions() as session:
        return await search_directory(session, query, limit=limit, offset=offset)


async def table_counts(db: Database) -> tuple[int, int, int]:
    """(practitioners, imports, changes): what an aborted import must leave as it was."""
    async with db.sessions() as session:
        values = [
            int(await session.scalar(sa.text(f"SELECT count(*) FROM {table}")) or 0)  # noqa: S608
            for table in ("directory_practitioner", "directory_import", "directory_change")
        ]
    return values[0], values[1], values[2]


async def leftover_tables(db: Database) -> list[str]:
    """Staging tables an import may have left behind (there must be none)."""
    async with db.engine.connect() as conn:
        names = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
    return sorted(n for n in names if n.endswith("_next"))


def scratch_disk_full(*args: object) -> None:
    """In a build process (`bridge.directory.scratch.index` or `write_rows`): the disk is
    full."""
    raise sqlite3.OperationalError("database or disk is full")
