"""Opening a service's database: its URL, its SQLite file, its schema brought up to date.

The bot and the bridge each keep their own Alembic history; both run it the same way, inside
the caller's transaction, after checking that every revision the database records is one this
code knows. A database upgraded by a newer release is refused: running older code on a newer
schema could silently corrupt it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError

TooNew = Callable[[str, str | None], Exception]
"""Builds the service's own error from the unknown revisions (comma-joined) and its head."""


def normalise_url(url: str, error: type[Exception]) -> str:
    """Give plain URLs their async driver (``sqlite:///x`` → ``sqlite+aiosqlite:///x``).

    Raises `error` (the service's own, for the operator) unless the URL names one of the two
    supported back ends.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise error(
            f"{url!r} is not a database URL: use sqlite:///PATH or postgresql://USER@HOST/DB"
        ) from None
    drivers = {
        "sqlite": "sqlite+aiosqlite",
        "postgresql": "postgresql+asyncpg",
        "postgres": "postgresql+asyncpg",
    }
    parsed = parsed.set(drivername=drivers.get(parsed.drivername, parsed.drivername))
    if parsed.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise error(
            f"unsupported database URL scheme {parsed.drivername!r}: "
            "use sqlite:///PATH or postgresql://USER@HOST/DB"
        )
    return parsed.render_as_string(hide_password=False)


def alembic_config(script_location: str) -> Config:
    """An in-memory Alembic configuration for the migrations at `script_location`."""
    cfg = Config()
    cfg.set_main_option("script_location", script_location)
    return cfg


def upgrade_to_head(sync_conn: Connection, script_location: str, too_new: TooNew) -> str:
    """Refuse a newer schema (raising `too_new(...)`), then upgrade to head; returns the head."""
    cfg = alembic_config(script_location)
    script = ScriptDirectory.from_config(cfg)
    known = {rev.revision for rev in script.walk_revisions()}
    current = MigrationContext.configure(sync_conn).get_current_heads()
    unknown = sorted(set(current) - known)
    if unknown:
        raise too_new(", ".join(unknown), script.get_current_head())
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")
    return script.get_current_head() or ""


def prepare_sqlite_file(database: str | None) -> None:
    """Create the SQLite file 0600 before the driver does: it holds who is who and who talks
    to whom, and the driver would create it readable by everyone (umask)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)


def sqlite_file_missing(url: str) -> Path | None:
    """The SQLite file `url` names when it does not exist or is empty (else None).

    A service that runs never creates its database: a missing file means a failed mount or a
    wrong path, and an empty database would look healthy while it knows no one.
    """
    parsed = make_url(url)
    database = parsed.database
    if not parsed.drivername.startswith("sqlite") or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        return None
    path = Path(database)
    try:
        return None if path.stat().st_size > 0 else path
    except OSError:
        return path


def has_schema(sync_conn: Connection) -> bool:
    """Whether the database records a schema revision (it was initialised by its service)."""
    return bool(MigrationContext.configure(sync_conn).get_current_heads())
