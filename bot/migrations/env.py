"""Alembic environment: migrations always run on a connection that `BotDatabase.open` provides.

There is no offline (SQL script) mode and no URL here: `BotDatabase` owns the engine, runs the
upgrade inside its own transaction and checks the schema version first. The version table's
name comes from the caller (`bridge.common.database.History`).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from bot.store.models import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        version_table=context.config.attributes["version_table"],
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if not isinstance(_connection, Connection):
    raise RuntimeError("bot migrations run only through BotDatabase.open(url)")
_run(_connection)
