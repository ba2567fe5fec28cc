"""Closing a case while a remote member's last message is still on its way to the bot's
homeserver: the engine and a scripted homeserver (history and redactions in memory), the
schedule on SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from bot.expiry.close import ExpiryLifecycle, redact_room_now
from bot.expiry.engine import ExpiryEngine, ExpirySettings
from bot.expiry.ports import Page, RedactFailure, TimelineEvent
from bot.expiry.store import ExpiryStore
from bot.ids import EventId, RoomId, UserId
from bot.store import BotDatabase, BotStore, CaseRoom
from tests.bot_commands_support import sqlite_url

ROOM = RoomId("!case:hs-a.test")
HOUR_S = 3600


def message(event_id: str, ts: int) -> TimelineEvent:
    return TimelineEvent(EventId(event_id), ts, "m.room.encrypted", is_state=False)


class Homeserver:
    """The bot's homeserver as the engine sees it: a room history, and redactions."""

    user_id = UserId("@caducee:hs-a.test")

    def __init__(self, events: list[TimelineEvent]) -> None:
        self.events = events  # oldest first
        self.redacted: list[str] = []
        self.late: list[TimelineEvent] = []

    async def redact(self, room_id: RoomId, event_id: EventId, txn_id: str) -> RedactFailure | None:
        self.redacted.append(event_id)
        return None

    async def history(self, room_id: RoomId, from_token: str | None, limit: int) -> Page:
        if self.late and {e.event_id for e in self.events} <= set(self.redacted):
            # The remote member's message reaches us over federation just as the close
            # has redacted everything it knew of.
            self.events.extend(self.late)
            self.late = []
        return Page(list(reversed(self.events)), None)


@pytest_asyncio.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[ExpiryStore, BotStore]]:
    url = sqlite_url(tmp_path)
    database = await BotDatabase.open(url, create=True)
    schedule, cases = ExpiryStore(database), BotStore(database)
    await cases.add_case(CaseRoom(ROOM, "genou", UserId("@a:hs-a.test"), HOUR_S, created_ms=0))
    yield schedule, cases
    await database.close()


async def _running(engine: ExpiryEngine) -> asyncio.Task[None]:
    return asyncio.create_task(engine.run())


async def test_a_message_reaching_the_homeserver_during_the_close_is_redacted_too(
    stores: tuple[ExpiryStore, BotStore],
) -> None:
    schedule, cases = stores
    now = schedule.now_ms()  # an hour's lifetime: nothing is due before the close
    homeserver = Homeserver([message("$a1", now - 2_000), message("$a2", now - 1_000)])
    homeserver.late = [message("$b1", now - 1_500)]
    engine = ExpiryEngine(
        schedule=schedule,
        cases=cases,
        matrix=homeserver,
        server_name="hs-a.test",
        settings=ExpirySettings(idle_poll_s=0.05),
    )
    worker = await _running(engine)
    try:
        left = await redact_room_now(engine, ROOM, timeout_s=10)
    finally:
        worker.cancel()
    assert left == 0
    assert sorted(homeserver.redacted) == ["$a1", "$a2", "$b1"]


async def test_what_sync_brings_into_a_closing_room_is_due_at_once(
    stores: tuple[ExpiryStore, BotStore],
) -> None:
    schedule, cases = stores
    engine = ExpiryEngine(
        schedule=schedule, cases=cases, matrix=Homeserver([]), server_name="hs-a.test"
    )
    assert await engine.lifetime_ms(ROOM) == HOUR_S * 1000
    engine.start_closing(ROOM)
    engine.observe(ROOM, EventId("$late"), 5_000, "m.room.encrypted", False)
    assert await engine.persist() == 1
    assert await engine.next_expiry_ms(ROOM) == 5_000  # not an hour later
    engine.forget(ROOM)  # purged: the room is an ordinary case room again if it ever returns
    assert await engine.lifetime_ms(ROOM) == HOUR_S * 1000


async def test_an_interrupted_close_gives_the_room_its_lifetime_back(
    stores: tuple[ExpiryStore, BotStore],
) -> None:
    schedule, cases = stores
    engine = ExpiryEngine(
        schedule=schedule, cases=cases, matrix=Homeserver([]), server_name="hs-a.test"
    )
    lifecycle = ExpiryLifecycle(engine)
    engine.start_closing(ROOM)
    assert await engine.lifetime_ms(ROOM) == 0
    case = await cases.get_case(ROOM)
    assert case is not None
    await lifecycle.close_aborted(case)  # removing the members failed: the case stays open
    assert await engine.lifetime_ms(ROOM) == HOUR_S * 1000


async def test_a_room_left_unpurged_is_not_kept_closing(
    stores: tuple[ExpiryStore, BotStore],
) -> None:
    schedule, cases = stores
    engine = ExpiryEngine(  # no admin token: the purge cannot be done
        schedule=schedule, cases=cases, matrix=Homeserver([]), server_name="hs-a.test"
    )
    engine.start_closing(ROOM)
    case = await cases.get_case(ROOM)
    assert case is not None
    await ExpiryLifecycle(engine).after_bot_left(case)
    assert await engine.lifetime_ms(ROOM) == HOUR_S * 1000  # the case is open in this test
