"""Whether the bot's database is there: `caducee bot run` never creates it.

A lost volume, a failed mount or a wrong database name would otherwise give a bot that starts
with no memory of the commands it ran, the case rooms it opened or the messages it must
expire, and says nothing. Creating the database is an explicit step (`caducee bot init`, or
the demo's first start).
"""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

from bot.store.database import HISTORY, StoreError, normalise_url
from bridge.common import database


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
