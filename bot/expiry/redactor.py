"""The redaction pipeline of the expiry engine: what is due is redacted, most overdue first.

`Redactor.run` keeps `concurrency` redactions in flight and records each outcome in the
schedule; the homeserver's answers are judged by `bot.expiry.policy` (done, retry later with
backoff, refused). It pauses everything when the homeserver is busy or down, and tells the
engine (`backlog`) when more is due than it holds, so that reading history back yields.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from bot.aio import wait_event
from bot.expiry.policy import Verdict, backoff_ms, judge, local_media, redaction_txn_id
from bot.expiry.ports import AdminError, ExpiryMatrix, HomeserverAdmin
from bot.expiry.settings import ExpirySettings
from bot.expiry.store import DueEntry, ExpiryStore, Outcome

logger = logging.getLogger(__name__)


class Redactor:
    """Redacts the schedule's due entries. `wake` is set by whoever makes something due."""

    def __init__(
        self,
        *,
        schedule: ExpiryStore,
        matrix: ExpiryMatrix,
        server_name: str,
        admin: HomeserverAdmin | None,
        settings: ExpirySettings,
        clock: Callable[[], int],
        wake: asyncio.Event,
    ) -> None:
        self._schedule = schedule
        self._matrix = matrix
        self._server_name = server_name
        self._admin = admin
        self._settings = settings
        self._clock = clock
        self._wake = wake
        self._paused_until = 0
        self._outage_failures = 0
        self.backlog = False
        """More is due than the pipeline holds (e.g. overdue events after a restart)."""

    async def _sleep(self, seconds: float) -> None:
        await wait_event(self._wake, seconds)
        self._wake.clear()

    async def run(self) -> None:
        """Keep `concurrency` redactions in flight, most overdue first.

        A pipeline rather than batches: a slow request holds only its own slot, where a batch
        would wait for its slowest member (measured under load: one batch of 256 per ~30 s).
        """
        in_flight: dict[tuple[str, str], asyncio.Task[None]] = {}
        finished: list[Outcome] = []
        try:
            while True:
                try:
                    await self._redaction_round(in_flight, finished)
                except Exception:
                    # A database hiccup (locked SQLite, PostgreSQL restart) must not stop expiry.
                    logger.exception("expiry: redaction round failed; retrying in 1 s")
                    await asyncio.sleep(1.0)
        finally:
            for task in in_flight.values():
                task.cancel()

    async def _redaction_round(
        self, in_flight: dict[tuple[str, str], asyncio.Task[None]], finished: list[Outcome]
    ) -> None:
        """Record finished attempts, start new ones, or sleep until something changes."""
        if finished:
            outcomes = finished[:]
            del finished[:]
            try:
                await self._schedule.record(outcomes, self._clock())
            except BaseException:
                finished[:0] = outcomes
                raise
        now = self._clock()
        if self._paused_until > now:
            await self._sleep((self._paused_until - now) / 1000)
            return
        free = self._settings.concurrency - len(in_flight)
        if free > 0:
            # Attempts that ended since the outcomes were recorded are still pending in the
            # schedule, like those in flight: read past both, and skip them.
            limit = free + len(in_flight) + len(finished) + 1
            candidates = await self._schedule.ready(now, limit)
            busy = in_flight.keys() | {(o.room_id, o.event_id) for o in finished}
            waiting = [e for e in candidates if _key(e) not in busy]
            fresh = waiting[:free]
            # More is due than the pipeline holds (e.g. overdue after a restart): reading
            # history back yields to redacting until the backlog is gone.
            self.backlog = len(waiting) > free
            for entry in fresh:
                in_flight[_key(entry)] = asyncio.create_task(
                    self._attempt(entry, in_flight, finished)
                )
            if fresh:
                return
        delay = self._settings.idle_poll_s
        if free > 0:  # every ready entry is in flight: the next one falls due later
            wake = await self._schedule.next_try_ms(after=now)
            if wake is not None:
                delay = min(delay, (wake - self._clock()) / 1000)
        await self._sleep(delay)  # completions wake us too

    async def _attempt(
        self,
        entry: DueEntry,
        in_flight: dict[tuple[str, str], asyncio.Task[None]],
        finished: list[Outcome],
    ) -> None:
        item = entry.pending
        outcome: Outcome | None = None
        try:
            async with asyncio.timeout(self._settings.request_timeout_s):
                outcome = await self._redact(entry)
        except TimeoutError:
            # A homeserver this slow answers eventually; the fixed transaction id makes the
            # retry a no-op if the first request did land.
            outcome = Outcome(item.room_id, item.event_id, None, self._clock() + 2_000)
        except Exception:
            logger.exception("expiry: redaction of %s failed unexpectedly", item.event_id)
        finally:
            in_flight.pop(_key(entry), None)
            if outcome is not None:
                finished.append(outcome)
            self._wake.set()

    async def _redact(self, entry: DueEntry) -> Outcome:
        item = entry.pending
        failure = await self._matrix.redact(
            item.room_id, item.event_id, redaction_txn_id(item.room_id, item.event_id)
        )
        verdict = Verdict.DONE if failure is None else judge(failure.errcode, failure.http_status)
        now = self._clock()
        if verdict is Verdict.DONE:
            self._outage_failures = 0
            await self._delete_media(entry.media)
            return Outcome(item.room_id, item.event_id, "redacted" if failure is None else "gone")
        assert failure is not None
        if verdict is Verdict.RETRY_LATER:
            self._outage_failures += 1
            wait = backoff_ms(self._outage_failures, failure.retry_after_ms)
            self._paused_until = max(self._paused_until, now + wait)
            logger.warning(
                "expiry: homeserver busy or unreachable (%s %s); pausing %d ms",
                failure.errcode,
                failure.http_status,
                wait,
            )
            return Outcome(item.room_id, item.event_id, None, self._paused_until)
        attempts = item.attempts + 1
        if attempts >= self._settings.max_refusals:
            logger.error(
                "expiry: giving up redacting %s in %s after %d refusals (%s)",
                item.event_id,
                item.room_id,
                attempts,
                failure.errcode,
            )
            return Outcome(item.room_id, item.event_id, "given_up")
        logger.warning(
            "expiry: redaction of %s in %s refused (%s); retrying",
            item.event_id,
            item.room_id,
            failure.errcode,
        )
        return Outcome(item.room_id, item.event_id, None, now + backoff_ms(attempts))

    async def _delete_media(self, media: Sequence[str]) -> None:
        if not media or not self._settings.delete_media or self._admin is None:
            return
        for media_id in local_media(media, self._server_name):
            try:
                await self._admin.delete_media(self._server_name, media_id)
            except AdminError as error:
                logger.warning("expiry: attachment %s not deleted: %s", media_id, error)


def _key(entry: DueEntry) -> tuple[str, str]:
    return (entry.pending.room_id, entry.pending.event_id)
