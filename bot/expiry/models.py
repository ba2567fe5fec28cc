"""The expiry engine's tables, as SQLAlchemy Core tables on their own metadata.

The schema is created by the Alembic revision ``0002`` in ``bot/migrations`` (run by
`bot.store.BotDatabase.open`); these definitions only let the engine query it. Ids and times
only - never message content. Attachments are remembered as their ``mxc://`` URIs, which
say where a blob lives, not what it holds.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text

from bot.store.models import ID_LENGTH, NAMING

metadata = MetaData(naming_convention=NAMING)

schedule = Table(
    "expiry_schedule",
    metadata,
    Column("room_id", String(ID_LENGTH), primary_key=True),
    Column("event_id", String(ID_LENGTH), primary_key=True),
    Column("origin_server_ts", BigInteger, nullable=False),
    Column("due_ms", BigInteger, nullable=False),
    # NULL until the homeserver acknowledged the redaction (or the event was gone).
    Column("done_ms", BigInteger, nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    # When the worker may try: the due time, pushed back by backoff after failures.
    Column("next_try_ms", BigInteger, nullable=False, server_default="0"),
    # Space-separated mxc:// URIs of the event's attachments (to delete with it), or NULL.
    Column("media", Text, nullable=True),
    # How it ended: "redacted", "gone", "given_up" (NULL while pending).
    Column("outcome", String(32), nullable=True),
)

gaps = Table(
    "expiry_gaps",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("room_id", String(ID_LENGTH), nullable=False),
    # Pagination token to read backwards from; NULL means "from the newest event".
    Column("from_token", Text, nullable=True),
    # Stop at a known event no newer than this (NULL: stop at any known event).
    Column("until_ts", BigInteger, nullable=True),
    Column("created_ms", BigInteger, nullable=False),
)
