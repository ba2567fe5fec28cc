"""`BotDatabase`: the bot's one database connection, migrated once, and the bot's clock.

`await BotDatabase.open(url)` brings the schema to the code's version with the Alembic
migrations shipped in ``bot/migrations`` (refusing a database written by a newer bot, and a
missing one unless `create=True`: only `caducee bot init` creates it), then
hands the same sessions and the same clock to every store on it: `bot.store.BotStore` (case
rooms, commands, audit), `bot.expiry.store.ExpiryStore` (the redaction schedule) and
`bot.cases.journal.CaseJournal` (the case lifecycle). Tests pass their own `clock`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from bridge.common import database
from bridge.common.database import History, prepare_sqlite_file, upgrade_to_head

logger = logging.getLogger(__name__)

Clock = Callable[[], int]
"""Milliseconds since the epoch."""


def wall_clock_ms() -> int:
    """The real time, in milliseconds since the epoch (the bot's clock outside tests)."""
    return int(time.time() * 1000)


class StoreError(Exception):
    """The database cannot be used as it is; the message is meant for the operator."""


class SchemaTooNewError(StoreError):
    """The database was migrated by a newer bot; running older code on it could corrupt it."""


class DatabaseMissingError(StoreError):
    """No initialised bot database where the configuration says one is.

    `what` names it (`no bot database at PATH`); `missing_message(what, config)` says it
    with the configuration file the operator used.
    """

    def __init__(self, what: str) -> None:
        super().__init__(missing_message(what))
        self.what = what


def missing_message(what: str, config: object = "CONFIG") -> str:
    """The operator's line for a missing or empty bot database: where, why, what to run."""
    return (
        f"{what}; nothing was created: the bot never creates its database except with "
        f"`caducee bot init -c {config}`. Check database_url / store_dir: a lost volume or a "
        "wrong path would otherwise start a bot that forgot its case rooms and expiries. For "
        f"a new bot, run `caducee bot init -c {config}` once."
    )


def normalise_url(url: str) -> str:
    """Add the async driver to plain URLs (``sqlite:///x`` → ``sqlite+aiosqlite:///x``)."""
    return database.normalise_url(url, StoreError)


def _too_new(unknown: str, head: str | None) -> SchemaTooNewError:
    return SchemaTooNewError(
        f"the bot database is at schema revision {unknown}, which this version "
        f"of the bot does not know (it knows up to {head}): it was "
        "upgraded by a newer bot. Run that newer version, or restore a backup."
    )


HISTORY = History(
    script_location="bot:migrations",
    version_table="bot_alembic_version",
    marker_table="processed_commands",
    too_new=_too_new,
)
"""The bot's schema history; its own version table lets it share a database with the bridge."""


def _migrate(sync_conn: Connection) -> str:
    """Check the schema version, then upgrade to head. Runs inside the caller's transaction."""
    return upgrade_to_head(sync_conn, HISTORY)


async def missing_database(url: str) -> str | None:
    """Why the database at `url` cannot be the bot's (no file, empty), or None when it is.

    Raises:
        StoreError: the database cannot be reached or opened (no server, no such database).
    """
    full = normalise_url(url)
    missing = database.sqlite_file_missing(full)
    if missing is not None:
        return f"no bot database at {missing}"
    shown = make_url(full).render_as_string(hide_password=True)
    engine = create_async_engine(full)
    try:
        async with engine.connect() as conn:
            initialised = await conn.run_sync(database.has_schema, HISTORY)
    except (SQLAlchemyError, OSError) as exc:  # no server, no such database, refused
        raise StoreError(f"cannot open the bot database {shown}: {type(exc).__name__}") from None
    finally:
        await engine.dispose()
    return None if initialised else f"the database {shown} is empty"


class BotDatabase:
    """One engine and its sessions for every store of the bot, and the clock they stamp with.

    Build it with `await BotDatabase.open(url)`; `await db.close()` on shutdown.
    """

    def __init__(self, engine: AsyncEngine, clock: Clock = wall_clock_ms) -> None:
        self._engine = engine
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(
            engine, expire_on_commit=False
        )
        self._clock = clock

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        create: bool = False,
        clock: Clock = wall_clock_ms,
        **engine_options: Any,
    ) -> BotDatabase:
        """Connect, migrate to the code's schema, and return the ready database.

        Only `create=True` (`caducee bot init`, the demo's first start, tests) creates the
        database; otherwise a missing SQLite file or a database without the bot's schema is
        refused and nothing is written.

        Raises:
            DatabaseMissingError: no initialised database there, and `create` is False.
            SchemaTooNewError: the database was written by a newer bot.
            StoreError: the URL is not usable.
        """
        if not create:
            missing = await missing_database(url)
            if missing is not None:
                raise DatabaseMissingError(missing)
        full = normalise_url(url)
        parsed = make_url(full)
        if parsed.drivername.startswith("sqlite"):
            if create:
                prepare_sqlite_file(parsed.database)
            engine_options.setdefault("connect_args", {"timeout": 30})
        engine = create_async_engine(full, **engine_options)
        try:
            async with engine.begin() as conn:
                head = await conn.run_sync(_migrate)
        except BaseException:
            await engine.dispose()
            raise
        logger.info("bot database ready at schema revision %s", head)
        return cls(engine, clock)

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def now_ms(self) -> int:
        """The bot's clock: what every store stamps rows with, and the expiry engine's time."""
        return self._clock()

    async def close(self) -> None:
        await self._engine.dispose()
