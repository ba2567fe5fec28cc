"""Alembic environment: migrations run only on a connection that `bridge.db.migrate` provides.

There is no offline (SQL script) mode and no URL here: `bridge.db` owns the engine, checks that
the database is not newer than the code, then runs the upgrade inside its own transaction. The
version table's name comes from the caller (`bridge.common.database.History`).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from bridge.db import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        version_table=context.config.attributes["version_table"],
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
    )
    with context.begin_transaction():
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if not isinstance(_connection, Connection):
    raise RuntimeError("bridge migrations run only through bridge.db.migrate()")
_run(_connection)
