"""Whether the bot's database is there: `caducee bot run` never creates it.

A lost volume, a failed mount or a wrong database name would otherwise give a bot that starts
with no memory of the commands it ran, the case rooms it opened or the messages it must
expire, and says nothing. Creating the database is an explicit step (`caducee bot init`, or
the demo's first start).
"""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bot.store.store import normalise_url
from bridge.common import database


async def missing_database(url: str) -> str | None:
    """Why the database at `url` cannot be the bot's (no file, empty), or None when it is.

    Connection problems are raised as they come: the caller reports them as it does at start.
    """
    full = normalise_url(url)
    missing = database.sqlite_file_missing(full)
    if missing is not None:
        return f"no bot database at {missing}"
    engine = create_async_engine(full)
    try:
        async with engine.connect() as conn:
            initialised = await conn.run_sync(database.has_schema)
    finally:
        await engine.dispose()
    if initialised:
        return None
    shown = make_url(full).render_as_string(hide_password=True)
    return f"the database {shown} is empty"
