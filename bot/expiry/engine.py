"""`ExpiryEngine`: the thin async shell around the expiry rules.

It takes timeline events from the bot's sync loop (`observe` then `persist`), keeps the
schedule in the bot's database, reads back what sync skipped (gaps), and has what is due
redacted (`run`, with `bot.expiry.redactor.Redactor`). Every decision is a pure function of
`bot.expiry.policy`.

Order of work after a start: rooms are caught up from their newest event back to the last
event already scheduled (in case the previous process died after the homeserver delivered
events but before they were persisted), while the worker redacts overdue events first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from bot.aio import wait_event
from bot.expiry.backfill import plan_page
from bot.expiry.policy import (
    backoff_ms,
    due_ms,
    is_expirable,
)
from bot.expiry.ports import (
    AdminError,
    ExpiryMatrix,
    HomeserverAdmin,
    MatrixUnavailableError,
    TimelineEvent,
)
from bot.expiry.redactor import Redactor
from bot.expiry.settings import CaseSource, ExpirySettings
from bot.expiry.store import ExpiryStore, Gap, NewEntry

__all__ = ["CaseSource", "ExpiryEngine", "ExpirySettings"]
from bot.ids import EventId, RoomId

logger = logging.getLogger(__name__)

_DAY_MS = 86_400_000


class ExpiryEngine:
    """Schedules and performs the redaction of expired events (fed by `bot.expiry.nio_matrix`)."""

    def __init__(
        self,
        *,
        schedule: ExpiryStore,
        cases: CaseSource,
        matrix: ExpiryMatrix,
        server_name: str,
        admin: HomeserverAdmin | None = None,
        settings: ExpirySettings | None = None,
    ) -> None:
        self._schedule = schedule
        self._cases = cases
        self._matrix = matrix
        self._server_name = server_name
        self._admin = admin
        self._settings = settings or ExpirySettings()
        self._clock = schedule.now_ms  # the bot's one clock, set when its database is opened
        self._lifetimes: dict[RoomId, tuple[int | None, int]] = {}
        self._closing: set[RoomId] = set()
        self._buffer: list[tuple[RoomId, TimelineEvent, int]] = []
        self._persist_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._gap_wake = asyncio.Event()
        self._started = False
        self._persist_task: asyncio.Task[None] | None = None
        self._redactor = Redactor(
            schedule=schedule,
            matrix=matrix,
            server_name=server_name,
            admin=admin,
            settings=self._settings,
            clock=self._clock,
            wake=self._wake,
        )

    @property
    def schedule(self) -> ExpiryStore:
        return self._schedule

    @property
    def admin(self) -> HomeserverAdmin | None:
        return self._admin

    def now_ms(self) -> int:
        return self._clock()

    def wake(self) -> None:
        """Make the worker look at the schedule now (after entries were made due)."""
        self._wake.set()

    # -- fed by the sync loop ------------------------------------------------------------

    def observe(
        self,
        room_id: RoomId,
        event_id: EventId,
        origin_server_ts: int,
        event_type: str,
        is_state: bool,
        *,
        redacted: bool = False,
        media: Sequence[str] = (),
    ) -> None:
        """Note a timeline event (any room, any sender; undecryptable ones included).

        Cheap and synchronous: it is buffered until `persist`, which the shell awaits before
        saving the sync token that delivered the event.
        """
        event = TimelineEvent(
            event_id, origin_server_ts, event_type, is_state, redacted, tuple(media)
        )
        self.observe_event(room_id, event)

    def observe_event(self, room_id: RoomId, event: TimelineEvent) -> None:
        if is_expirable(event.event_type, event.is_state) and not event.redacted:
            self._buffer.append((room_id, event, self._clock()))

    def request_persist(self) -> None:
        """Persist soon, in the background (coalesced: one transaction for many events)."""
        if self._persist_task is None or self._persist_task.done():
            self._persist_task = asyncio.get_running_loop().create_task(self._persist_quietly())

    async def _persist_quietly(self) -> None:
        try:
            await self.persist()
        except Exception:
            logger.exception("expiry: could not persist the schedule; will retry")

    async def persist(self) -> int:
        """Commit everything observed so far; returns how many events were scheduled.

        Raises whatever the database raises; the buffer is then kept for the next call and
        the shell must not save its sync token.
        """
        async with self._persist_lock:
            buffer, self._buffer = self._buffer, []
            parked: list[tuple[RoomId, TimelineEvent, int]] = []
            now = self._clock()
            try:
                entries: list[NewEntry] = []
                for room_id, event, seen in buffer:
                    lifetime = await self.lifetime_ms(room_id)
                    if lifetime is None:
                        # Not a case room - or not yet: `!case new` records the case just
                        # after the room exists. Keep the event a while before dropping it.
                        if now - seen < self._settings.park_s * 1000:
                            parked.append((room_id, event, seen))
                        continue
                    entries.append(
                        NewEntry(
                            room_id,
                            event.event_id,
                            event.origin_server_ts,
                            due_ms(event.origin_server_ts, lifetime, seen),
                            event.media,
                        )
                    )
                await self._schedule.add(entries)
            except BaseException:
                self._buffer[:0] = buffer
                raise
            self._buffer[:0] = parked
        if entries:
            self._wake.set()
        return len(entries)

    async def on_limited_timeline(self, room_id: RoomId, prev_batch: str) -> None:
        """Sync skipped events before ``prev_batch``: remember to read them back (committed
        before returning, like `persist`)."""
        if await self.lifetime_ms(room_id) is None:
            return
        await self._schedule.add_gap(room_id, prev_batch, None)
        self._gap_wake.set()

    # -- lifetimes -----------------------------------------------------------------------

    async def lifetime_ms(self, room_id: RoomId) -> int | None:
        """The room's message lifetime, or None when it is not an open case room.

        Zero for a room being closed: whatever still arrives in it goes at once.
        """
        if room_id in self._closing:
            return 0
        now = self._clock()
        cached = self._lifetimes.get(room_id)
        if cached is not None and (
            cached[0] is not None or now - cached[1] < self._settings.negative_cache_s * 1000
        ):
            return cached[0]
        case = await self._cases.get_case(room_id)
        lifetime = case.ttl_seconds * 1000 if case is not None and case.is_open else None
        self._lifetimes[room_id] = (lifetime, now)
        return lifetime

    async def set_lifetime(self, room_id: RoomId, seconds: int) -> bool:
        """Change a case room's lifetime (``!expire``): pending events get new due times.

        The caller checks the federation's bounds and updates ``m.room.retention``.
        Returns False when the room is not an open case.
        """
        if not await self._cases.set_case_ttl(room_id, seconds):
            return False
        self._lifetimes[room_id] = (seconds * 1000, self._clock())
        await self._schedule.reschedule_room(room_id, seconds * 1000)
        self._wake.set()
        return True

    async def expire_own_event(
        self,
        room_id: RoomId,
        event_id: EventId,
        origin_server_ts: int,
        lifetime_ms: int,
        media: Sequence[str] = (),
    ) -> None:
        """Schedule one event the bot sent in a room that is not a case (a case export in a
        DM): redacted, and its attachment deleted, once ``lifetime_ms`` has passed.

        Committed before returning; scheduling the same event again changes nothing.
        """
        due = due_ms(origin_server_ts, lifetime_ms)
        await self._schedule.add([NewEntry(room_id, event_id, origin_server_ts, due, tuple(media))])
        self._wake.set()

    async def room_added(self, room_id: RoomId) -> None:
        """A case room was just recorded: schedule what it already holds (events the bot
        saw before the case existed in the database were not kept)."""
        self._lifetimes.pop(room_id, None)
        await self._schedule.add_gap(room_id, None, None)
        self._gap_wake.set()

    async def next_expiry_ms(self, room_id: RoomId) -> int | None:
        """When the room's next message expires (None when none is waiting)."""
        return await self._schedule.next_due_ms(room_id)

    def start_closing(self, room_id: RoomId) -> None:
        """From now on every event of this room is due at once, including those that reach
        the bot's homeserver later (a remote member's last message still in transit)."""
        self._closing.add(room_id)
        self._lifetimes.pop(room_id, None)

    def stop_closing(self, room_id: RoomId) -> None:
        """The close did not go through: the room's messages get their lifetime back."""
        self._closing.discard(room_id)
        self._lifetimes.pop(room_id, None)

    def forget(self, room_id: RoomId) -> None:
        self._lifetimes.pop(room_id, None)
        self._closing.discard(room_id)

    # -- running ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Prepare a run: rate-limit exemption and catch-up of every open case room.

        Call it before the shell's first sync of this process (so the catch-up anchors are
        the events persisted by the previous run); `run` calls it if needed.
        """
        if self._started:
            return
        self._started = True
        if self._admin is not None:
            try:
                await self._admin.exempt_from_rate_limits(self._matrix.user_id)
                logger.info("expiry: rate limits lifted for %s", self._matrix.user_id)
            except AdminError as error:
                logger.warning(
                    "expiry: could not lift rate limits (%s); redactions may be "
                    "throttled by the homeserver",
                    error,
                )
        else:
            logger.warning("expiry: no admin token: redactions may be rate-limited")
        now = self._clock()
        for case in await self._cases.open_cases():
            # Read back every event still inside the lifetime window, not only those newer
            # than the last persisted one: a gap noted just before a crash may be older.
            horizon = now - case.ttl_seconds * 1000
            anchor = await self._schedule.newest_ts(case.room_id)
            until = horizon if anchor is None else min(anchor, horizon)
            await self._schedule.add_gap(case.room_id, None, until)
        self._gap_wake.set()

    async def run(self) -> None:
        """Work until cancelled: redact what is due, back-fill gaps, flush, prune."""
        await self.start()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._redactor.run())
            group.create_task(self._backfill_loop())
            group.create_task(self._housekeeping_loop())

    async def _sleep(self, event: asyncio.Event, seconds: float) -> None:
        await wait_event(event, seconds)
        event.clear()

    async def _backfill_loop(self) -> None:
        gate = asyncio.Semaphore(self._settings.backfill_concurrency)

        alone = asyncio.Lock()

        async def one(gap: Gap) -> None:
            async with gate:
                if self._redactor.backlog:  # overdue redactions first: one room at a time meanwhile
                    async with alone:
                        await self._fill(gap)
                else:
                    await self._fill(gap)

        while True:
            try:
                pending = await self._schedule.gaps(limit=self._settings.backfill_concurrency * 8)
                if not pending:
                    await self._sleep(self._gap_wake, 30.0)
                    continue
                await asyncio.gather(*(one(g) for g in pending))
            except Exception:
                logger.exception("expiry: back-fill round failed; retrying in 1 s")
                await asyncio.sleep(1.0)

    async def _fill(self, gap: Gap) -> None:
        try:
            await self.backfill(gap.room_id, gap.from_token, gap.until_ts)
        except MatrixUnavailableError as error:
            if error.errcode in ("M_FORBIDDEN", "M_NOT_FOUND"):
                logger.warning(
                    "expiry: cannot read back %s (%s); gap dropped", gap.room_id, error.errcode
                )
            else:
                logger.warning("expiry: back-fill of %s failed (%s); retrying", gap.room_id, error)
                await asyncio.sleep(backoff_ms(1, error.retry_after_ms) / 1000)
                return
        await self._schedule.delete_gap(gap.id)

    async def backfill(
        self,
        room_id: RoomId,
        from_token: str | None,
        until_ts: int | None,
        *,
        due_now: bool = False,
    ) -> int:
        """Read a room backwards from ``from_token`` and schedule what is not yet known.

        Stops at a scheduled event (no newer than ``until_ts`` when given), or at the start
        of the retained history. ``due_now`` schedules everything for immediate redaction and
        reads to the start (closing a case). Returns how many events were scheduled.
        """
        lifetime = 0 if due_now else await self.lifetime_ms(room_id)
        if lifetime is None:
            return 0
        token = from_token
        added = 0
        for _ in range(self._settings.max_backfill_pages):
            page = await self._matrix.history(room_id, token, self._settings.history_page)
            known = await self._schedule.known(room_id, (e.event_id for e in page.events))
            plan = plan_page(
                room_id,
                page.events,
                known,
                until_ts=until_ts,
                lifetime_ms=None if due_now else lifetime,
                now=self._clock(),
            )
            entries, stop = plan.entries, plan.stop
            await self._schedule.add(entries)
            added += len(entries)
            if entries:
                self._wake.set()
            if stop or page.end is None:
                return added
            token = page.end
        logger.warning(
            "expiry: back-fill of %s stopped after %d pages",
            room_id,
            self._settings.max_backfill_pages,
        )
        return added

    async def _housekeeping_loop(self) -> None:
        """Persist what a shell observed without persisting; forget old finished entries."""
        last_prune = 0
        while True:
            await asyncio.sleep(1.0)
            if self._buffer:
                try:
                    await self.persist()
                except Exception:
                    logger.exception("expiry: could not persist the schedule; will retry")
            now = self._clock()
            if now - last_prune > 3_600_000:
                last_prune = now
                keep = self._settings.keep_done_days * _DAY_MS
                await self._schedule.prune_done(now - keep)
