"""Opening a service's database: its URL, its SQLite file, its schema brought up to date.

The bot and the bridge each keep their own Alembic history, recorded in their own version table
(so that one database can hold both); both run it the same way, inside the caller's
transaction, after checking that every revision the database records is one this code knows.
A database upgraded by a newer release is refused: running older code on a newer schema could
silently corrupt it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError

TooNew = Callable[[str, str | None], Exception]
"""Builds the service's own error from the unknown revisions (comma-joined) and its head."""

LEGACY_VERSION_TABLE = "alembic_version"
"""Alembic's default, where both services recorded their revision before they had their own
tables: the revisions of a database created by an earlier release are read from it once."""


@dataclass(frozen=True, slots=True)
class History:
    """One service's Alembic history, and how it finds its place in a database.

    Each service records its revision in its own table (`version_table`), so the bot and the
    bridge may share one database. `marker_table`, created by the service's first revision,
    tells whether a legacy `alembic_version` table is the service's own; `renamed` maps the
    revision ids an earlier release wrote there to today's.
    """

    script_location: str
    version_table: str
    marker_table: str
    too_new: TooNew
    renamed: Mapping[str, str] = field(default_factory=dict)

    def config(self) -> Config:
        """An in-memory Alembic configuration for these migrations."""
        cfg = alembic_config(self.script_location)
        cfg.attributes["version_table"] = self.version_table
        return cfg


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


def _heads(sync_conn: Connection, version_table: str) -> tuple[str, ...]:
    context = MigrationContext.configure(sync_conn, opts={"version_table": version_table})
    return tuple(context.get_current_heads())


def _legacy_heads(sync_conn: Connection, history: History) -> tuple[str, ...] | None:
    """The service's revisions as an earlier release recorded them in `alembic_version`, or
    None when that table is absent, is not the service's, or was already carried over."""
    tables = set(inspect(sync_conn).get_table_names())
    if (
        history.version_table in tables
        or LEGACY_VERSION_TABLE not in tables
        or history.marker_table not in tables
    ):
        return None
    return tuple(history.renamed.get(rev, rev) for rev in _heads(sync_conn, LEGACY_VERSION_TABLE))


def current_revisions(sync_conn: Connection, history: History) -> tuple[str, ...]:
    """The revisions the database records for this service (none: it never migrated it)."""
    legacy = _legacy_heads(sync_conn, history)
    return legacy if legacy is not None else _heads(sync_conn, history.version_table)


def upgrade_to_head(sync_conn: Connection, history: History) -> str:
    """Refuse a newer schema (raising `history.too_new(...)`), then upgrade to head; returns
    the head. Runs inside the caller's transaction.

    A database from an earlier release has its revisions moved from `alembic_version` to the
    service's own table first, in the same transaction.
    """
    cfg = history.config()
    script = ScriptDirectory.from_config(cfg)
    known = {rev.revision for rev in script.walk_revisions()}
    legacy = _legacy_heads(sync_conn, history)
    current = legacy if legacy is not None else _heads(sync_conn, history.version_table)
    unknown = sorted(set(current) - known)
    if unknown:
        raise history.too_new(", ".join(unknown), script.get_current_head())
    cfg.attributes["connection"] = sync_conn
    if legacy:
        command.stamp(cfg, list(legacy))
        sync_conn.execute(text(f"DROP TABLE {LEGACY_VERSION_TABLE}"))
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


def has_schema(sync_conn: Connection, history: History) -> bool:
    """Whether the database records a schema revision (it was initialised by its service)."""
    return bool(current_revisions(sync_conn, history))
