"""Tables of the case lifecycle (created by migration 0003). Identifiers and times only."""

from __future__ import annotations

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from bot.store.models import ID_LENGTH, Base


class CaseRequestRow(Base):
    """One ``!case new`` request: recorded before the room is created, given its room id as
    soon as the homeserver answers, so a restarted bot resumes instead of opening another.

    A ``!case export`` is recorded the same way; its ``room_id`` is the DM the export is about
    to be sent to (the intent, written before anything is sent)."""

    __tablename__ = "case_requests"

    event_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    requester: Mapped[str] = mapped_column(String(ID_LENGTH))
    started_ms: Mapped[int] = mapped_column(BigInteger)
    room_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), default=None)


class CaseMarksRow(Base):
    """What happened to an open case that its members must know: exported, warned."""

    __tablename__ = "case_marks"

    room_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    exported_ms: Mapped[int | None] = mapped_column(BigInteger, default=None)
    warned_ms: Mapped[int | None] = mapped_column(BigInteger, default=None)
