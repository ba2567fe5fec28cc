"""`ExpiryStore`: the persistent schedule of redactions and the back-fill gaps.

One short transaction per call; every write that the sync loop depends on is committed
before the call returns, which is what lets the shell save its sync token afterwards and
survive a ``kill -9`` at any moment. Works on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.expiry.models import gaps, schedule
from bot.expiry.policy import Pending, pack_media, unpack_media
from bot.ids import EventId, RoomId
from bot.store import BotStore, normalise_url

logger = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class NewEntry:
    """An event to schedule (ids, times and attachment URIs only)."""

    room_id: RoomId
    event_id: EventId
    origin_server_ts: int
    due_ms: int
    media: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DueEntry:
    """A pending redaction as the worker handles it."""

    pending: Pending
    media: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one attempt, to record: ``outcome`` set means finished."""

    room_id: RoomId
    event_id: EventId
    outcome: str | None
    next_try_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Gap:
    id: int
    room_id: RoomId
    from_token: str | None
    until_ts: int | None


@dataclass(frozen=True, slots=True)
class Finished:
    """A finished entry, for reports and benchmarks: how late was the redaction."""

    room_id: RoomId
    event_id: EventId
    origin_server_ts: int
    due_ms: int
    done_ms: int
    outcome: str


class ExpiryStore:
    """The schedule, on the bot's database (tables from Alembic revision 0002)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name

    @classmethod
    async def open(cls, url: str, *, create: bool = False, **engine_options: Any) -> ExpiryStore:
        """Connect to the bot's database, bringing its schema up to date first.

        The migration goes through `BotStore.open` (which also refuses a database written by
        a newer bot, and a missing one unless `create`), so the engine never runs against a
        schema it does not know.
        """
        migrated = await BotStore.open(url, create=create)
        await migrated.close()
        full = normalise_url(url)
        if make_url(full).drivername.startswith("sqlite"):
            engine_options.setdefault("connect_args", {"timeout": 30})
        return cls(create_async_engine(full, **engine_options))

    async def close(self) -> None:
        await self._engine.dispose()

    def _insert_or_add_media(self) -> Any:
        """Insert; for an event already scheduled, only fill in attachments it lacked (the
        shell may decrypt an event - and learn its attachment - after first seeing it)."""
        dialect: Any = postgresql if self._dialect == "postgresql" else sqlite
        statement = dialect.insert(schedule)
        return statement.on_conflict_do_update(
            index_elements=[schedule.c.room_id, schedule.c.event_id],
            set_={"media": func.coalesce(schedule.c.media, statement.excluded.media)},
        )

    # -- scheduling ------------------------------------------------------------------------

    async def add(self, entries: Sequence[NewEntry]) -> None:
        """Schedule events in one transaction. An event already scheduled keeps its times
        (the first sighting counts) and gains attachments it did not have."""
        if not entries:
            return
        rows = [
            {
                "room_id": e.room_id,
                "event_id": e.event_id,
                "origin_server_ts": e.origin_server_ts,
                "due_ms": e.due_ms,
                "next_try_ms": e.due_ms,
                "attempts": 0,
                "media": pack_media(e.media),
            }
            for e in entries
        ]
        async with self._engine.begin() as conn:
            for start in range(0, len(rows), 500):
                await conn.execute(self._insert_or_add_media(), rows[start : start + 500])

    async def known(self, room_id: RoomId, event_ids: Iterable[str]) -> dict[str, int]:
        """Which of these events are scheduled (done or not), with their origin_server_ts."""
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return {}
        async with self._engine.connect() as conn:
            result = await conn.execute(
                select(schedule.c.event_id, schedule.c.origin_server_ts).where(
                    schedule.c.room_id == room_id, schedule.c.event_id.in_(ids)
                )
            )
            return {str(r.event_id): int(r.origin_server_ts) for r in result}

    async def ready(self, now: int, limit: int) -> list[DueEntry]:
        """Pending entries whose next attempt time has come, most overdue and oldest first."""
        query = (
            select(schedule)
            .where(schedule.c.done_ms.is_(None), schedule.c.next_try_ms <= now)
            .order_by(
                schedule.c.due_ms,
                schedule.c.origin_server_ts,
                schedule.c.room_id,
                schedule.c.event_id,
            )
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            DueEntry(
                Pending(
                    room_id=RoomId(r.room_id),
                    event_id=EventId(r.event_id),
                    origin_server_ts=int(r.origin_server_ts),
                    due_ms=int(r.due_ms),
                    next_try_ms=int(r.next_try_ms),
                    attempts=int(r.attempts),
                ),
                unpack_media(r.media),
            )
            for r in rows
        ]

    async def next_try_ms(self, after: int | None = None) -> int | None:
        """The earliest next attempt among pending entries (later than ``after`` if given);
        None when there is none."""
        query = select(func.min(schedule.c.next_try_ms)).where(schedule.c.done_ms.is_(None))
        if after is not None:
            query = query.where(schedule.c.next_try_ms > after)
        async with self._engine.connect() as conn:
            value = await conn.scalar(query)
        return None if value is None else int(value)

    async def record(self, outcomes: Sequence[Outcome], at: int) -> None:
        """Write the results of a round of attempts in one transaction."""
        if not outcomes:
            return
        async with self._engine.begin() as conn:
            for o in outcomes:
                where = and_(schedule.c.room_id == o.room_id, schedule.c.event_id == o.event_id)
                if o.outcome is not None:
                    values: dict[str, Any] = {
                        "done_ms": at,
                        "outcome": o.outcome,
                        "attempts": schedule.c.attempts + 1,
                    }
                else:
                    values = {"next_try_ms": o.next_try_ms, "attempts": schedule.c.attempts + 1}
                await conn.execute(update(schedule).where(where).values(**values))

    # -- rooms -----------------------------------------------------------------------------

    async def reschedule_room(self, room_id: RoomId, lifetime_ms: int) -> int:
        """Apply a new lifetime to a room's pending entries; returns how many changed.

        An entry that is backing off keeps its later retry time.
        """
        new_due = schedule.c.origin_server_ts + lifetime_ms
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(schedule)
                .where(schedule.c.room_id == room_id, schedule.c.done_ms.is_(None))
                .values(
                    due_ms=new_due,
                    next_try_ms=case(
                        (
                            and_(schedule.c.attempts > 0, schedule.c.next_try_ms > new_due),
                            schedule.c.next_try_ms,
                        ),
                        else_=new_due,
                    ),
                )
            )
            return int(getattr(result, "rowcount", 0) or 0)

    async def expedite_room(self, room_id: RoomId, at: int) -> None:
        """Make every pending entry of a room due now (closing a case)."""
        async with self._engine.begin() as conn:
            await conn.execute(
                update(schedule)
                .where(schedule.c.room_id == room_id, schedule.c.done_ms.is_(None))
                .values(next_try_ms=at)
            )

    async def pending_count(self, room_id: RoomId | None = None) -> int:
        query = select(func.count()).select_from(schedule).where(schedule.c.done_ms.is_(None))
        if room_id is not None:
            query = query.where(schedule.c.room_id == room_id)
        async with self._engine.connect() as conn:
            return int(await conn.scalar(query) or 0)

    async def next_due_ms(self, room_id: RoomId) -> int | None:
        """When the room's next message expires (None when nothing is pending)."""
        async with self._engine.connect() as conn:
            value = await conn.scalar(
                select(func.min(schedule.c.due_ms)).where(
                    schedule.c.room_id == room_id, schedule.c.done_ms.is_(None)
                )
            )
        return None if value is None else int(value)

    async def newest_ts(self, room_id: RoomId) -> int | None:
        """The newest scheduled event's time in a room: the anchor of a catch-up back-fill."""
        async with self._engine.connect() as conn:
            value = await conn.scalar(
                select(func.max(schedule.c.origin_server_ts)).where(schedule.c.room_id == room_id)
            )
        return None if value is None else int(value)

    async def forget_room(self, room_id: RoomId) -> None:
        """Drop a purged room's entries and gaps (nothing is left to redact there)."""
        async with self._engine.begin() as conn:
            await conn.execute(delete(schedule).where(schedule.c.room_id == room_id))
            await conn.execute(delete(gaps).where(gaps.c.room_id == room_id))

    async def prune_done(self, older_than_ms: int) -> int:
        """Forget entries finished before ``older_than_ms``; returns how many."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(schedule).where(
                    schedule.c.done_ms.is_not(None), schedule.c.done_ms < older_than_ms
                )
            )
            return int(getattr(result, "rowcount", 0) or 0)

    async def finished(self) -> list[Finished]:
        """Every finished entry (reports and the benchmark)."""
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(select(schedule).where(schedule.c.done_ms.is_not(None)))
            ).all()
        return [
            Finished(
                RoomId(r.room_id),
                EventId(r.event_id),
                int(r.origin_server_ts),
                int(r.due_ms),
                int(r.done_ms),
                str(r.outcome),
            )
            for r in rows
        ]

    # -- gaps ------------------------------------------------------------------------------

    async def add_gap(self, room_id: RoomId, from_token: str | None, until_ts: int | None) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(gaps).values(
                    room_id=room_id, from_token=from_token, until_ts=until_ts, created_ms=now_ms()
                )
            )

    async def gaps(self, limit: int = 50) -> list[Gap]:
        """Unfilled gaps, oldest first."""
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(gaps).order_by(gaps.c.id).limit(limit))).all()
        return [Gap(int(r.id), RoomId(r.room_id), r.from_token, r.until_ts) for r in rows]

    async def delete_gap(self, gap_id: int) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(delete(gaps).where(gaps.c.id == gap_id))
