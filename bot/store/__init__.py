"""The bot's database: case rooms, processed command ids, audit (and the expiry schedule).

`BotStore.open(url)` brings the schema to the code's version with the Alembic migrations
shipped in ``bot/migrations``, refuses a database written by a newer bot, and refuses a
missing or empty one unless told to create it (`caducee bot init` only). SQLite by
default, PostgreSQL in production; the same tests run on both.
"""

from __future__ import annotations

from bot.store.records import AuditEntry, CaseRoom, Claim
from bot.store.store import (
    BotStore,
    DatabaseMissingError,
    SchemaTooNewError,
    StoreError,
    missing_message,
    normalise_url,
)

__all__ = [
    "AuditEntry",
    "BotStore",
    "CaseRoom",
    "Claim",
    "DatabaseMissingError",
    "SchemaTooNewError",
    "StoreError",
    "missing_message",
    "normalise_url",
]
