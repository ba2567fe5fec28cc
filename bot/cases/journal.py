"""`CaseJournal`: the case lifecycle's rows, on the bot's database (SQLite or PostgreSQL).

One short transaction per call, like `bot.store.BotStore`, on the same `BotDatabase`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from bot.cases.models import CaseMarksRow, CaseRequestRow
from bot.ids import EventId, RoomId, UserId
from bot.store.database import BotDatabase
from bot.store.models import ProcessedCommandRow


@dataclass(frozen=True, slots=True)
class CaseRequest:
    """A ``!case new`` as recorded. ``fresh``: first time seen (nothing was done yet)."""

    event_id: EventId
    room_id: RoomId | None
    fresh: bool
    started_ms: int = 0


@dataclass(frozen=True, slots=True)
class Intent:
    """A request that recorded its room but whose command never finished."""

    event_id: EventId
    requester: UserId
    room_id: RoomId
    started_ms: int
    asked_in: RoomId  # where the command was typed


class CaseJournal:
    def __init__(self, database: BotDatabase) -> None:
        self._sessions = database.sessions
        self._now_ms = database.now_ms

    # -- !case new, exactly once ---------------------------------------------------------

    async def begin_request(self, event_id: EventId, requester: UserId) -> CaseRequest:
        """Record the intent to open a room for ``event_id`` (committed before any effect),
        or return what an earlier, interrupted run recorded."""
        started = self._now_ms()
        try:
            async with self._sessions.begin() as session:
                session.add(
                    CaseRequestRow(event_id=event_id, requester=requester, started_ms=started)
                )
            return CaseRequest(event_id, None, fresh=True, started_ms=started)
        except IntegrityError:
            pass
        async with self._sessions() as session:
            row = await session.get(CaseRequestRow, event_id)
        assert row is not None  # the insert above collided with it
        room_id = RoomId(row.room_id) if row.room_id else None
        return CaseRequest(event_id, room_id, fresh=False, started_ms=row.started_ms)

    async def interrupted_intents(self, command_name: str) -> list[Intent]:
        """Requests of ``command_name`` whose command never finished but whose room was
        recorded: for an export, the DM it was about to be sent to (or was sent to)."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(
                    CaseRequestRow.event_id,
                    CaseRequestRow.requester,
                    CaseRequestRow.room_id,
                    CaseRequestRow.started_ms,
                    ProcessedCommandRow.room_id,
                )
                .join(ProcessedCommandRow, ProcessedCommandRow.event_id == CaseRequestRow.event_id)
                .where(
                    ProcessedCommandRow.command == command_name,
                    ProcessedCommandRow.finished_ms.is_(None),
                    CaseRequestRow.room_id.is_not(None),
                )
            )
            return [
                Intent(EventId(e), UserId(u), RoomId(r), started, RoomId(asked_in))
                for e, u, r, started, asked_in in rows
                if r is not None
            ]

    async def set_request_room(self, event_id: EventId, room_id: RoomId) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(CaseRequestRow)
                .where(CaseRequestRow.event_id == event_id)
                .values(room_id=room_id)
            )

    # -- marks ---------------------------------------------------------------------------

    async def _marks(self, room_id: RoomId) -> CaseMarksRow | None:
        async with self._sessions() as session:
            return await session.get(CaseMarksRow, room_id)

    async def _set_mark(self, room_id: RoomId, **values: int) -> None:
        async with self._sessions.begin() as session:
            row = await session.get(CaseMarksRow, room_id)
            if row is None:
                session.add(CaseMarksRow(room_id=room_id, **values))
            else:
                for key, value in values.items():
                    setattr(row, key, value)

    async def exported_ms(self, room_id: RoomId) -> int | None:
        """When the case was last exported (None: never)."""
        row = await self._marks(room_id)
        return None if row is None else row.exported_ms

    async def mark_exported(self, room_id: RoomId, *, at_ms: int | None = None) -> None:
        await self._set_mark(room_id, exported_ms=self._now_ms() if at_ms is None else at_ms)

    async def warned_ms(self, room_id: RoomId) -> int | None:
        row = await self._marks(room_id)
        return None if row is None else row.warned_ms

    async def mark_warned(self, room_id: RoomId, *, at_ms: int | None = None) -> None:
        await self._set_mark(room_id, warned_ms=self._now_ms() if at_ms is None else at_ms)

    async def unwarned(self, room_ids: list[RoomId]) -> list[RoomId]:
        """The rooms among ``room_ids`` that have not had their warning yet."""
        if not room_ids:
            return []
        async with self._sessions() as session:
            warned = set(
                await session.scalars(
                    select(CaseMarksRow.room_id).where(
                        CaseMarksRow.room_id.in_(room_ids), CaseMarksRow.warned_ms.is_not(None)
                    )
                )
            )
        return [r for r in room_ids if r not in warned]
