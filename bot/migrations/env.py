"""Alembic environment: migrations always run on a connection that `BotStore.open` provides.

There is no offline (SQL script) mode and no URL here: the store owns the engine, runs the
upgrade inside its own transaction and checks the schema version first.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from bot.store.models import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if not isinstance(_connection, Connection):
    raise RuntimeError("bot migrations run only through BotStore.open(url)")
_run(_connection)
