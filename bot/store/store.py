"""`BotStore`: the only code that talks SQL for the bot. One short transaction per call."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from bot.ids import EventId, RoomId, UserId
from bot.store.models import AuditRow, CaseRoomRow, ProcessedCommandRow
from bot.store.records import AuditEntry, CaseRoom, Claim
from bridge.common import database
from bridge.common.database import prepare_sqlite_file, upgrade_to_head

logger = logging.getLogger(__name__)

SCRIPT_LOCATION = "bot:migrations"


class StoreError(Exception):
    """The database cannot be used as it is; the message is meant for the operator."""


class SchemaTooNewError(StoreError):
    """The database was migrated by a newer bot; running older code on it could corrupt it."""


class DatabaseMissingError(StoreError):
    """No initialised bot database where the configuration says one is.

    `what` names it (`no bot database at PATH`); `missing_message(what, config)` says it
    with the configuration file the operator used.
    """

    def __init__(self, what: str) -> None:
        super().__init__(missing_message(what))
        self.what = what


def missing_message(what: str, config: object = "CONFIG") -> str:
    """The operator's line for a missing or empty bot database: where, why, what to run."""
    return (
        f"{what}; nothing was created: the bot never creates its database except with "
        f"`caducee bot init -c {config}`. Check database_url / store_dir: a lost volume or a "
        "wrong path would otherwise start a bot that forgot its case rooms and expiries. For "
        f"a new bot, run `caducee bot init -c {config}` once."
    )


def now_ms() -> int:
    return int(time.time() * 1000)


def normalise_url(url: str) -> str:
    """Add the async driver to plain URLs (``sqlite:///x`` → ``sqlite+aiosqlite:///x``)."""
    return database.normalise_url(url, StoreError)


def _too_new(unknown: str, head: str | None) -> SchemaTooNewError:
    return SchemaTooNewError(
        f"the bot database is at schema revision {unknown}, which this version "
        f"of the bot does not know (it knows up to {head}): it was "
        "upgraded by a newer bot. Run that newer version, or restore a backup."
    )


def _migrate(sync_conn: Connection) -> str:
    """Check the schema version, then upgrade to head. Runs inside the caller's transaction."""
    return upgrade_to_head(sync_conn, SCRIPT_LOCATION, _too_new)


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

    Build it with `await BotStore.open(url)`; `await store.close()` on shutdown.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @classmethod
    async def open(cls, url: str, *, create: bool = False, **engine_options: Any) -> BotStore:
        """Connect, migrate to the code's schema, and return a ready store.

        Only `create=True` (`caducee bot init`, the demo's first start, tests) creates the
        database; otherwise a missing SQLite file or a database without the bot's schema is
        refused and nothing is written.

        Raises:
            DatabaseMissingError: no initialised database there, and `create` is False.
            SchemaTooNewError: the database was written by a newer bot.
            StoreError: the URL is not usable.
        """
        if not create:
            from bot.store.initialised import missing_database

            missing = await missing_database(url)
            if missing is not None:
                raise DatabaseMissingError(missing)
        full = normalise_url(url)
        parsed = make_url(full)
        if parsed.drivername.startswith("sqlite"):
            if create:
                prepare_sqlite_file(parsed.database)
            engine_options.setdefault("connect_args", {"timeout": 30})
        engine = create_async_engine(full, **engine_options)
        try:
            async with engine.begin() as conn:
                head = await conn.run_sync(_migrate)
        except BaseException:
            await engine.dispose()
            raise
        logger.info("bot database ready at schema revision %s", head)
        return cls(engine)

    async def close(self) -> None:
        await self._engine.dispose()

    @property
    def engine(self) -> AsyncEngine:
        """Shared with the modules that keep their own tables (`bot.cases.journal`)."""
        return self._engine

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
            claimed_ms=now_ms() if at_ms is None else at_ms,
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
        ts = now_ms() if at_ms is None else at_ms
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
                    ts_ms=now_ms() if at_ms is None else at_ms,
                    sender=sender,
                    room_id=room_id,
                    command=command[:64],
                    outcome=outcome[:32],
                )
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
                .values(closed_ms=now_ms() if at_ms is None else at_ms)
            )
            return bool(getattr(result, "rowcount", 0))
