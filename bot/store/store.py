"""`BotStore`: case rooms, processed commands and audit. One short transaction per call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from bot.ids import EventId, RoomId, UserId
from bot.store.database import BotDatabase, StoreError
from bot.store.models import AuditRow, CaseRoomRow, DirectRoomRow, ProcessedCommandRow
from bot.store.records import AuditEntry, CaseRoom, Claim


def _case(row: CaseRoomRow) -> CaseRoom:
    return CaseRoom(
        room_id=RoomId(row.room_id),
        label=row.label,
        creator=UserId(row.creator),
        ttl_seconds=row.ttl_seconds,
        created_ms=row.created_ms,
        closed_ms=row.closed_ms,
    )


class BotStore:
    """Case rooms, processed commands and audit, behind small async methods.

    Build it on the opened database: ``BotStore(await BotDatabase.open(url))``.
    """

    def __init__(self, database: BotDatabase) -> None:
        self._database = database
        self._sessions = database.sessions
        self._now_ms = database.now_ms

    @property
    def database(self) -> BotDatabase:
        """Shared with the stores that keep their own tables (`bot.cases.journal`)."""
        return self._database

    # -- processed commands -------------------------------------------------------------

    async def claim_command(
        self, event_id: EventId, room_id: RoomId, command_name: str, *, at_ms: int | None = None
    ) -> Claim:
        """Record that the command in ``event_id`` starts, unless it was seen before.

        The row is written (committed) *before* the command has any effect, so a command
        whose effects began is never run again by accident; `finish_command` marks it done.
        """
        row = ProcessedCommandRow(
            event_id=event_id,
            room_id=room_id,
            command=command_name,
            claimed_ms=self._now_ms() if at_ms is None else at_ms,
        )
        try:
            async with self._sessions.begin() as session:
                session.add(row)
            return Claim.NEW
        except IntegrityError:
            pass
        async with self._sessions() as session:
            finished = await session.scalar(
                select(ProcessedCommandRow.finished_ms).where(
                    ProcessedCommandRow.event_id == event_id
                )
            )
        return Claim.INTERRUPTED if finished is None else Claim.DONE

    async def finish_command(
        self,
        event_id: EventId,
        *,
        sender: UserId,
        room_id: RoomId,
        command_name: str,
        outcome: str,
        at_ms: int | None = None,
    ) -> None:
        """Mark the command done and write its audit line, in one transaction."""
        ts = self._now_ms() if at_ms is None else at_ms
        async with self._sessions.begin() as session:
            await session.execute(
                update(ProcessedCommandRow)
                .where(ProcessedCommandRow.event_id == event_id)
                .values(finished_ms=ts, command=command_name)
            )
            session.add(
                AuditRow(
                    ts_ms=ts, sender=sender, room_id=room_id, command=command_name, outcome=outcome
                )
            )

    async def prune_processed(self, older_than_ms: int) -> int:
        """Forget finished commands claimed before ``older_than_ms``; returns how many.

        Homeservers only redeliver recent events (after a restart from an older sync token),
        so old ids are dead weight.
        """
        async with self._sessions.begin() as session:
            rows = await session.scalars(
                select(ProcessedCommandRow).where(
                    ProcessedCommandRow.claimed_ms < older_than_ms,
                    ProcessedCommandRow.finished_ms.is_not(None),
                )
            )
            count = 0
            for row in rows:
                await session.delete(row)
                count += 1
        return count

    # -- audit ---------------------------------------------------------------------------

    async def record_audit(
        self,
        sender: UserId,
        room_id: RoomId | str,
        command: str,
        outcome: str,
        *,
        at_ms: int | None = None,
    ) -> None:
        """One audit line for something that is not a claimed command (an identity reset)."""
        async with self._sessions.begin() as session:
            session.add(
                AuditRow(
                    ts_ms=self._now_ms() if at_ms is None else at_ms,
                    sender=sender,
                    room_id=room_id,
                    command=command[:64],
                    outcome=outcome[:32],
                )
            )

    async def latest_outcome(self, sender: str, command: str) -> str | None:
        """The outcome of the newest audit line of `sender` for `command`, None if none."""
        async with self._sessions() as session:
            return await session.scalar(
                select(AuditRow.outcome)
                .where(AuditRow.sender == sender, AuditRow.command == command)
                .order_by(AuditRow.id.desc())
                .limit(1)
            )

    async def audit_entries(self, *, limit: int = 100) -> list[AuditEntry]:
        """The latest audit lines, newest first."""
        async with self._sessions() as session:
            rows = await session.scalars(select(AuditRow).order_by(AuditRow.id.desc()).limit(limit))
            return [
                AuditEntry(
                    ts_ms=r.ts_ms,
                    sender=UserId(r.sender),
                    room_id=RoomId(r.room_id),
                    command=r.command,
                    outcome=r.outcome,
                )
                for r in rows
            ]

    # -- case rooms ----------------------------------------------------------------------

    async def add_case(self, case: CaseRoom) -> None:
        """Record a new case room. Raises StoreError if the room id is already recorded."""
        try:
            async with self._sessions.begin() as session:
                session.add(
                    CaseRoomRow(
                        room_id=case.room_id,
                        label=case.label,
                        creator=case.creator,
                        ttl_seconds=case.ttl_seconds,
                        created_ms=case.created_ms,
                        closed_ms=case.closed_ms,
                    )
                )
        except IntegrityError as exc:
            raise StoreError(f"case room {case.room_id} is already recorded") from exc

    async def get_case(self, room_id: RoomId) -> CaseRoom | None:
        async with self._sessions() as session:
            row = await session.get(CaseRoomRow, room_id)
            return _case(row) if row is not None else None

    async def open_cases(self) -> Sequence[CaseRoom]:
        """Open case rooms, oldest first (the expiry engine walks them at start)."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(CaseRoomRow)
                .where(CaseRoomRow.closed_ms.is_(None))
                .order_by(CaseRoomRow.created_ms, CaseRoomRow.room_id)
            )
            return [_case(r) for r in rows]

    async def closed_cases_among(self, room_ids: Sequence[str]) -> list[CaseRoom]:
        """The closed cases among ``room_ids`` (a bot still in one was stopped mid-close)."""
        ids = list(dict.fromkeys(room_ids))
        found: list[CaseRoom] = []
        async with self._sessions() as session:
            for start in range(0, len(ids), 500):
                rows = await session.scalars(
                    select(CaseRoomRow).where(
                        CaseRoomRow.room_id.in_(ids[start : start + 500]),
                        CaseRoomRow.closed_ms.is_not(None),
                    )
                )
                found.extend(_case(r) for r in rows)
        return found

    async def set_case_ttl(self, room_id: RoomId, ttl_seconds: int) -> bool:
        """Change an open case's lifetime (``!expire``). False if no such open case."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(CaseRoomRow)
                .where(CaseRoomRow.room_id == room_id, CaseRoomRow.closed_ms.is_(None))
                .values(ttl_seconds=ttl_seconds)
            )
            return bool(getattr(result, "rowcount", 0))

    async def close_case(self, room_id: RoomId, *, at_ms: int | None = None) -> bool:
        """Mark a case closed. False if it was not open (already closed or unknown)."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(CaseRoomRow)
                .where(CaseRoomRow.room_id == room_id, CaseRoomRow.closed_ms.is_(None))
                .values(closed_ms=self._now_ms() if at_ms is None else at_ms)
            )
            return bool(getattr(result, "rowcount", 0))

    # -- direct rooms --------------------------------------------------------------------

    async def record_direct_room(self, user_id: UserId, room_id: RoomId) -> None:
        """``room_id`` is now ``user_id``'s direct conversation with the bot (one atomic
        upsert: of concurrent records for one user, the last one wins)."""
        dialect: Any = postgresql if self._database.dialect == "postgresql" else sqlite
        values = {"user_id": user_id, "room_id": room_id, "recorded_ms": self._now_ms()}
        statement = dialect.insert(DirectRoomRow).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[DirectRoomRow.user_id],
            set_={"room_id": room_id, "recorded_ms": values["recorded_ms"]},
        )
        async with self._sessions.begin() as session:
            await session.execute(statement)

    async def direct_room(self, user_id: UserId) -> RoomId | None:
        """The direct conversation last recorded for ``user_id`` (unchecked: see
        `record_direct_room`'s callers, who check the members before using it)."""
        async with self._sessions() as session:
            row = await session.get(DirectRoomRow, user_id)
            return RoomId(row.room_id) if row is not None else None

    async def recorded_rooms(self) -> set[str]:
        """Every room the bot has recorded as a case (open or closed) or as a direct room:
        what an interrupted ``!case new`` need not look in for the room it created."""
        async with self._sessions() as session:
            cases = await session.scalars(select(CaseRoomRow.room_id))
            found = set(cases)
            found.update(await session.scalars(select(DirectRoomRow.room_id)))
            return found

    async def forget_direct_room(self, user_id: UserId, room_id: RoomId) -> None:
        """Forget ``room_id`` as ``user_id``'s direct conversation (they left it); a newer
        record for another room is kept."""
        async with self._sessions.begin() as session:
            await session.execute(
                delete(DirectRoomRow).where(
                    DirectRoomRow.user_id == user_id, DirectRoomRow.room_id == room_id
                )
            )
