"""The bridge's database: one engine per process, one schema history (Alembic), two back ends.

SQLite (the default, one file beside the bridge) and PostgreSQL (production) are both reached
through async drivers. Every entry point (the bridge service, the `caducee directory` commands,
the tests) opens the database through `open_database`, which brings the schema up to the
code's revision and refuses a database written by a newer bridge: running old code on a newer
schema could silently corrupt it.

SQLite runs in WAL mode so that searches keep reading the directory while an import writes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from alembic.config import Config
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

from bridge.common import database
from bridge.common.database import prepare_sqlite_file

logger = logging.getLogger(__name__)

SCRIPT_LOCATION = "bridge:migrations"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///data/bridge.db"
"""Same place as a bridge started with the example configuration from the current folder."""

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
"""Shared by every bridge table declaration, so constraint names are predictable in migrations."""


class DatabaseError(Exception):
    """The database cannot be used as it is; the message is meant for the operator."""


class SchemaTooNewError(DatabaseError):
    """The database was migrated by a newer bridge than this one."""


def normalise_url(url: str) -> str:
    """Give plain URLs their async driver (``sqlite:///x`` → ``sqlite+aiosqlite:///x``).

    Raises:
        DatabaseError: the URL is not one of the two supported back ends.
    """
    return database.normalise_url(url, DatabaseError)


def safe_url(url: str) -> str:
    """The URL without its password, fit for logs and messages."""
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str, *, create: bool = False, **options: Any) -> AsyncEngine:
    """An async engine for `url`, with the settings the bridge relies on (WAL for SQLite).

    With `create`, a missing SQLite file is made first (0600, in a folder it creates).
    Does not touch the schema; use `open_database` for that.
    """
    full = normalise_url(url)
    parsed = make_url(full)
    if parsed.drivername.startswith("sqlite"):
        if create:
            prepare_sqlite_file(parsed.database)
        engine = _create_async_engine(full, **options)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    options.setdefault("pool_pre_ping", True)
    # Directory searches send their full-text query as a parameter of a few statement
    # shapes. After five runs PostgreSQL would plan a shape once for any query ("generic
    # plan"), blind to how many practitioners the words match, and walk 1.5 million rows
    # for a page it could sort from a few thousand: plan each query for its own words.
    arguments = options.setdefault("connect_args", {})
    settings = arguments.setdefault("server_settings", {})
    settings.setdefault("plan_cache_mode", "force_custom_plan")
    return _create_async_engine(full, **options)


def _too_new(unknown: str, head: str | None) -> SchemaTooNewError:
    return SchemaTooNewError(
        f"the bridge database is at schema revision {unknown}, which this "
        f"version of the bridge does not know (it knows up to {head}):"
        " it was upgraded by a newer bridge. Run that version, or restore a backup."
    )


HISTORY = database.History(
    script_location=SCRIPT_LOCATION,
    version_table="bridge_alembic_version",
    marker_table="directory_practitioner",
    too_new=_too_new,
    # Ids written by releases before the bridge had its own version table.
    renamed={"0003": "0002", "0004_registry": "0003"},
)
"""The bridge's schema history; its own version table lets it share a database with the bot."""


def alembic_config() -> Config:
    return HISTORY.config()


def _migrate(sync_conn: Connection) -> str:
    """Refuse a newer schema, then upgrade to head, inside the caller's transaction."""
    return database.upgrade_to_head(sync_conn, HISTORY)


async def migrate(engine: AsyncEngine) -> str:
    """Bring the schema to the code's revision; returns that revision.

    Raises:
        SchemaTooNewError: the database was written by a newer bridge.
    """
    async with engine.begin() as conn:
        head = await conn.run_sync(_migrate)
    logger.info("bridge database ready at schema revision %s", head)
    return head


@dataclass(frozen=True, slots=True)
class Database:
    """An engine and its session factory; `await db.close()` when the process stops."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def close(self) -> None:
        await self.engine.dispose()


class DatabaseMissingError(DatabaseError):
    """No initialised bridge database where the configuration says one is.

    `what` names it (`no bridge database at PATH`); `missing_message(what, config)` says it
    with the configuration file the operator used.
    """

    def __init__(self, what: str) -> None:
        super().__init__(missing_message(what))
        self.what = what


def missing_message(what: str, config: object = "CONFIG") -> str:
    """The operator's line for a missing or empty bridge database: where, why, what to run."""
    return (
        f"{what}; nothing was created: the bridge never creates its database except with "
        f"`caducee bridge init -c {config}`. Check database_url / data_dir (or --db): a failed "
        "mount or a wrong path or database name would otherwise start an empty directory and "
        f"registry. For a new deployment, run `caducee bridge init -c {config}` once."
    )


async def open_database(
    url: str, *, upgrade: bool = True, create: bool = False, **options: Any
) -> Database:
    """Connect and (by default) migrate; the one way the bridge opens its database.

    Only `create=True` (`caducee bridge init`, the demo's first start, tests) creates a
    database. Otherwise - the service and every command - a missing SQLite file or a
    database without the bridge's schema is refused with `DatabaseMissingError`, and
    nothing is written: a wrong path must never become an empty, healthy-looking bridge.

    Raises:
        DatabaseError: bad URL, unreachable server, no database (when not creating), or a
            schema newer than the code.
    """
    if not create:
        missing = database.sqlite_file_missing(normalise_url(url))
        if missing is not None:
            raise DatabaseMissingError(f"no bridge database at {missing}")
    engine = make_engine(url, create=create, **options)
    try:
        if not create:
            async with engine.connect() as conn:
                initialised = await conn.run_sync(database.has_schema, HISTORY)
            if not initialised:
                raise DatabaseMissingError(f"the database {safe_url(url)} is empty")
        if upgrade:
            await migrate(engine)
    except DatabaseError:
        await engine.dispose()
        raise
    except (OSError, ConnectionError) as exc:
        await engine.dispose()
        raise DatabaseError(f"cannot reach the database {safe_url(url)}: {exc}") from None
    except DBAPIError as exc:  # the server answered no: no such database, role, password
        await engine.dispose()
        reason = (
            str(exc.orig or exc).splitlines()[0] if exc.orig is not None else type(exc).__name__
        )
        raise DatabaseError(f"cannot open the database {safe_url(url)}: {reason}") from None
    except BaseException:
        await engine.dispose()
        raise
    return Database(engine, async_sessionmaker(engine, expire_on_commit=False))
