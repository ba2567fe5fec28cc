"""The bot's tables for commands and case rooms. Identifiers and times only: never content.

The expiry engine's tables (``expiry_schedule``, ...) are mapped by `bot.expiry.models`;
the migrations in ``bot/migrations`` create both.

Times are integer milliseconds since the epoch (the unit of Matrix's ``origin_server_ts``), so
the expiry schedule compares them without time-zone conversions on either back end.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Matrix ids are at most 255 bytes (spec); labels are capped by the commands.
ID_LENGTH = 255
LABEL_LENGTH = 128

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class CaseRoomRow(Base):
    """A case room the bot created (``!case new``); ``closed_ms`` is set by ``!case close``."""

    __tablename__ = "case_rooms"

    room_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    label: Mapped[str] = mapped_column(String(LABEL_LENGTH))  # pseudonymous, checked for ids
    creator: Mapped[str] = mapped_column(String(ID_LENGTH))
    ttl_seconds: Mapped[int] = mapped_column(BigInteger)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    closed_ms: Mapped[int | None] = mapped_column(BigInteger, default=None)


class ProcessedCommandRow(Base):
    """One command message seen by the bot, so a redelivered event is not run twice.

    ``finished_ms`` is NULL while the command runs: a row still NULL after a restart means the
    bot stopped mid-command (see `BotStore.claim_command`).
    """

    __tablename__ = "processed_commands"

    event_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    room_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    command: Mapped[str] = mapped_column(String(64))
    claimed_ms: Mapped[int] = mapped_column(BigInteger)
    finished_ms: Mapped[int | None] = mapped_column(BigInteger, default=None)


class AuditRow(Base):
    """Who ran which command, where, when and with what outcome. Never arguments or content."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    sender: Mapped[str] = mapped_column(String(ID_LENGTH))
    room_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    command: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(32))


class DirectRoomRow(Base):
    """A practitioner's direct conversation with the bot, as the bot last knew it: the room
    they invited the bot to as a direct chat, or the one the bot opened to send them an
    export. Found by identifier, whatever the number of rooms the bot is in; checked against
    the room's members before each use (they may have left)."""

    __tablename__ = "direct_rooms"

    user_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    room_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    recorded_ms: Mapped[int] = mapped_column(BigInteger)
