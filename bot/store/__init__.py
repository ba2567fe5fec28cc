"""The bot's database: case rooms, processed command ids, audit (and the expiry schedule).

`BotDatabase.open(url)` brings the schema to the code's version with the Alembic migrations
shipped in ``bot/migrations``, refuses a database written by a newer bot and a missing or
empty one unless told to create it (`caducee bot init` only); every store is
built on it (`BotStore(db)` here). SQLite by default, PostgreSQL in production; the same tests
run on both.
"""

from __future__ import annotations

from bot.store.database import (
    BotDatabase,
    Clock,
    DatabaseMissingError,
    SchemaTooNewError,
    StoreError,
    missing_message,
    normalise_url,
    wall_clock_ms,
)
from bot.store.records import AuditEntry, CaseRoom, Claim
from bot.store.store import BotStore

__all__ = [
    "AuditEntry",
    "BotDatabase",
    "BotStore",
    "CaseRoom",
    "Claim",
    "Clock",
    "DatabaseMissingError",
    "SchemaTooNewError",
    "StoreError",
    "missing_message",
    "normalise_url",
    "wall_clock_ms",
]
