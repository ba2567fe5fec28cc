"""Case lifecycle over the dispatcher, an in-memory Matrix and a real store: the lifetime in
the topic, the warning before messages disappear, closing asks before losing an unexported
case, and ``!case new`` stopped at every step opens exactly one room."""

# The dispatcher tests' ``bot`` fixture is imported, and test arguments shadow it by design.

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.cases.journal import CaseJournal
from bot.cases.lifetime import lifetime_topic, warning_due_ms
from bot.cases.resume import REQUEST_MARK, find_marked_room
from bot.cases.warnings import warn_due_cases
from bot.commands.case import finish_interrupted_closes
from bot.commands.dispatcher import CommandDispatcher
from bot.ids import EventId, RoomId, UserId
from bot.store import BotDatabase, BotStore
from tests.bot_commands_support import FakeMatrix, sqlite_url
from tests.test_bot_commands_dispatch import (
    ALICE,
    BOB,
    CAROL,
    SETTINGS,
    Bot,
    _open_case,
)
from tests.test_bot_commands_dispatch import bot as bot  # the fixture (explicit re-export)

TOPIC = ("m.room.topic", "")


class Killed(BaseException):
    """The bot process dies here (kill -9): nothing after this point runs, nothing is
    caught by the command's error handling."""


class CrashingMatrix(FakeMatrix):
    """The in-memory Matrix, able to kill the bot right after a chosen step took effect
    (every later call of the dead process fails), and to find a room by its request mark
    as the nio shell does."""

    def __init__(self) -> None:
        super().__init__()
        self.crash_after: str | None = None
        self.invites_before_crash = 0
        self.dead = False

    def _alive(self) -> None:
        if self.dead:
            raise Killed

    def _die(self) -> None:
        self.crash_after, self.dead = None, True
        raise Killed

    async def create_room(self, body: dict[str, Any]) -> RoomId:
        self._alive()
        room_id = await super().create_room(body)
        if self.crash_after == "create":
            self._die()
        return room_id

    async def invite(self, room_id: RoomId, user_id: UserId) -> None:
        self._alive()
        await super().invite(room_id, user_id)
        if self.crash_after == "invite":
            if self.invites_before_crash == 0:
                self._die()
            self.invites_before_crash -= 1

    async def kick(self, room_id: RoomId, user_id: UserId, reason: str) -> None:
        self._alive()
        await super().kick(room_id, user_id, reason)
        if self.crash_after == "kick":
            self._die()

    async def leave(self, room_id: RoomId) -> None:
        self._alive()
        if self.crash_after == "close-recorded":  # dies just before leaving
            self._die()
        await super().leave(room_id)

    async def send_notice(self, room_id: RoomId, body: str, html: str | None = None) -> EventId:
        self._alive()
        if self.crash_after == "notice":
            self._die()
        return await super().send_notice(room_id, body, html)

    async def find_created_room(
        self, request: EventId, skip: Collection[str] = ()
    ) -> RoomId | None:
        for room_id, room in self.rooms.items():
            if room_id in skip:
                continue
            if room.body.get("creation_content", {}).get(REQUEST_MARK) == request:
                return room_id
        return None


# -- the lifetime in the topic ---------------------------------------------------------------


async def test_the_topic_states_the_lifetime_and_follows_expire(bot: Bot) -> None:
    room_id = await _open_case(bot, "!case new genou-72 @bob:hs-b.test ttl=7d")
    topic = bot.matrix.rooms[room_id].body["topic"]
    assert topic == lifetime_topic(7 * 86400)
    assert "effacés 1w" in topic and "erased 1w" in topic  # French and English
    assert "genou" not in topic  # not even the pseudonym: only the policy

    from bot.expiry.command import expire_command

    class Engine:
        async def set_lifetime(self, room_id: RoomId, seconds: int) -> None:
            await bot.store.set_case_ttl(room_id, seconds)

    bot.dispatcher.registry.add(expire_command(Engine()))  # type: ignore[arg-type]
    await bot.say("!expire 2h", sender=BOB, room=room_id)  # not the creator: refused
    assert TOPIC not in bot.matrix.rooms[room_id].state
    await bot.say("!expire 2h", room=room_id)
    assert bot.matrix.rooms[room_id].state[TOPIC] == {"topic": lifetime_topic(7200)}


# -- closing asks before losing an unexported case --------------------------------------------


async def test_closing_an_unexported_case_asks_for_confirmation_first(bot: Bot) -> None:
    room_id = await _open_case(bot)
    (asked,) = await bot.say("!case close", room=room_id)
    assert "!case close confirm" in asked and "!case export" in asked
    assert not any(c[0] == "kick" for c in bot.matrix.calls)
    case = await bot.store.get_case(room_id)
    assert case is not None and case.is_open
    (usage,) = await bot.say("!case close now", room=room_id)
    assert "confirm" in usage
    await bot.say("!case close confirm", room=room_id)
    case = await bot.store.get_case(room_id)
    assert case is not None and not case.is_open


async def test_an_exported_case_closes_without_asking(bot: Bot) -> None:
    room_id = await _open_case(bot)
    await CaseJournal(bot.store.database).mark_exported(room_id)
    await bot.say("!case close", room=room_id)
    case = await bot.store.get_case(room_id)
    assert case is not None and not case.is_open


# -- the warning before messages disappear ----------------------------------------------------


def test_the_warning_is_due_an_hour_before_and_only_for_short_lifetimes() -> None:
    assert warning_due_ms(1_000, 30 * 60) == 1_000  # an hour or less: right away
    assert warning_due_ms(1_000, 3600) == 1_000
    assert warning_due_ms(1_000, 6 * 3600) == 1_000 + 5 * 3600 * 1000
    assert warning_due_ms(1_000, 86400) is None
    assert warning_due_ms(1_000, 7 * 86400) is None


async def test_a_room_living_under_an_hour_is_warned_at_creation_once(bot: Bot) -> None:
    room_id = await _open_case(bot, "!case new court ttl=30m")
    (warning,) = bot.matrix.notices_in(room_id)
    assert "!case export" in warning and "30m" in warning
    case = await bot.store.get_case(room_id)
    assert case is not None
    journal = CaseJournal(bot.store.database)
    assert await warn_due_cases(bot.matrix, bot.store, journal, case.created_ms + 60_000) == 0
    assert len(bot.matrix.notices_in(room_id)) == 1


async def test_a_room_living_hours_is_warned_an_hour_before_its_first_expiry(bot: Bot) -> None:
    short = await _open_case(bot, "!case new six-heures ttl=6h")
    await bot.say("!case new une-semaine ttl=7d")
    (week,) = [r for r in bot.matrix.rooms if r not in (bot.dm, short)]
    assert bot.matrix.notices_in(short) == [] and bot.matrix.notices_in(week) == []
    case = await bot.store.get_case(short)
    assert case is not None
    journal = CaseJournal(bot.store.database)
    hour = 3600 * 1000
    assert await warn_due_cases(bot.matrix, bot.store, journal, case.created_ms + 4 * hour) == 0
    later = case.created_ms + 5 * hour
    assert await warn_due_cases(bot.matrix, bot.store, journal, later) == 1
    (warning,) = bot.matrix.notices_in(short)
    assert "in 1h" in warning and "dans 1h" in warning
    assert await warn_due_cases(bot.matrix, bot.store, journal, later + hour) == 0
    assert bot.matrix.notices_in(week) == []


# -- exactly once, whatever the moment the bot stops ---------------------------------------


@pytest_asyncio.fixture
async def crashing(bot: Bot) -> AsyncIterator[Bot]:
    matrix = CrashingMatrix()
    bot.dm = matrix.add_room([ALICE])
    bot.matrix = matrix
    bot.dispatcher = CommandDispatcher(
        actions=matrix, store=bot.store, directory=bot.client, settings=SETTINGS
    )
    yield bot


async def _restart(bot: Bot, tmp_path: Path) -> tuple[CommandDispatcher, BotStore]:
    store = BotStore(await BotDatabase.open(sqlite_url(tmp_path), create=True))
    return CommandDispatcher(
        actions=bot.matrix, store=store, directory=bot.client, settings=SETTINGS
    ), store


@pytest.mark.parametrize(
    ("step", "invites_before"),
    [("create", 0), ("invite", 0), ("invite", 1), ("invite", 2), ("notice", 0)],
    ids=["after-create", "after-1st-invite", "after-2nd-invite", "after-invites", "at-reply"],
)
async def test_a_case_new_killed_at_any_step_resumes_into_the_same_room(
    crashing: Bot, tmp_path: Path, step: str, invites_before: int
) -> None:
    bot = crashing
    assert isinstance(bot.matrix, CrashingMatrix)
    bot.matrix.crash_after, bot.matrix.invites_before_crash = step, invites_before
    msg = bot.message(f"!case new genou-72 @bob:hs-b.test {CAROL}")
    with pytest.raises(Killed):
        await bot.dispatcher.handle(msg)
    assert bot.matrix.notices_in(bot.dm) == []  # died before answering
    bot.matrix.dead = False

    dispatcher, store = await _restart(bot, tmp_path)
    try:
        await dispatcher.handle(msg)  # the homeserver redelivers the command
        await dispatcher.handle(msg)
    finally:
        await store.database.close()
    (room_id,) = [r for r in bot.matrix.rooms if r != bot.dm]  # one room, never two
    room = bot.matrix.rooms[room_id]
    assert room.invited == {ALICE, BOB, CAROL}
    invites = [c[2] for c in bot.matrix.calls if c[0] == "invite"]
    assert sorted(invites) == sorted({ALICE, BOB, CAROL})  # nobody invited twice
    (reply,) = bot.matrix.notices_in(bot.dm)
    assert room_id.replace("!", "") in reply.replace("%21", "")  # the link to that room
    assert "Not invited" not in reply
    assert BOB in reply and CAROL in reply
    case = await bot.store.get_case(room_id)
    assert case is not None and case.creator == ALICE


async def test_a_room_created_but_not_recorded_is_found_by_its_request_mark(
    crashing: Bot, tmp_path: Path
) -> None:
    """Killed between the homeserver's answer and the journal's write: only the mark in
    the room's creation content tells the restarted bot that the room exists."""
    bot = crashing
    msg = bot.message("!case new genou-72 @bob:hs-b.test")
    journal = CaseJournal(bot.store.database)
    await bot.store.claim_command(msg.event_id, msg.room_id, "case new")
    await journal.begin_request(msg.event_id, ALICE)
    body = {"creation_content": {REQUEST_MARK: msg.event_id}, "name": "Cas · genou-72"}
    room_id = await bot.matrix.create_room(body)
    await bot.dispatcher.handle(msg)
    assert [r for r in bot.matrix.rooms if r != bot.dm] == [room_id]
    assert bot.matrix.rooms[room_id].invited == {ALICE, BOB}


async def test_a_close_killed_after_removing_someone_finishes_on_restart(
    crashing: Bot, tmp_path: Path
) -> None:
    bot = crashing
    room_id = await _open_case(bot)
    assert isinstance(bot.matrix, CrashingMatrix)
    bot.matrix.crash_after = "kick"
    msg = bot.message("!case close confirm", room=room_id)
    with pytest.raises(Killed):
        await bot.dispatcher.handle(msg)
    bot.matrix.dead = False
    case = await bot.store.get_case(room_id)
    assert case is not None and case.is_open
    dispatcher, store = await _restart(bot, tmp_path)
    try:
        await dispatcher.handle(msg)
    finally:
        await store.database.close()
    room = bot.matrix.rooms[room_id]
    assert room.joined == set() and room.invited == set()
    case = await bot.store.get_case(room_id)
    assert case is not None and not case.is_open


async def test_a_close_killed_after_it_was_recorded_still_leaves_on_restart(
    crashing: Bot, tmp_path: Path
) -> None:
    """Everyone removed and the case recorded as closed, then the bot died before leaving:
    the redelivered command finishes the close instead of answering that the case is closed."""
    bot = crashing
    room_id = await _open_case(bot)
    assert isinstance(bot.matrix, CrashingMatrix)
    bot.matrix.crash_after = "close-recorded"
    msg = bot.message("!case close confirm", room=room_id)
    with pytest.raises(Killed):
        await bot.dispatcher.handle(msg)
    bot.matrix.dead = False
    case = await bot.store.get_case(room_id)
    assert case is not None and not case.is_open
    assert bot.matrix.user_id in bot.matrix.rooms[room_id].joined  # still in the room
    notices = len(bot.matrix.notices_in(room_id))
    store = BotStore(await BotDatabase.open(sqlite_url(tmp_path), create=True))
    dispatcher = CommandDispatcher(
        actions=bot.matrix,
        store=store,
        directory=bot.client,
        settings=SETTINGS,
        lifecycle=bot.lifecycle,
    )
    try:
        await dispatcher.handle(msg)
        await dispatcher.handle(msg)
    finally:
        await store.database.close()
    assert bot.matrix.rooms[room_id].joined == set()  # the bot left too
    assert ("leave", room_id) in [c[:2] for c in bot.matrix.calls]
    assert bot.lifecycle.calls[-1] == ("after_bot_left", room_id)  # purged after leaving
    assert len(bot.matrix.notices_in(room_id)) == notices  # no "this case is closed" answer
    # A new command in the closed room is still refused: only the interrupted one resumes.
    bot.matrix.join(room_id, bot.matrix.user_id)
    (closed,) = await bot.say("!case close confirm", room=room_id)
    assert "closed" in closed.lower()


async def test_at_start_the_bot_finishes_closes_it_was_stopped_in(bot: Bot) -> None:
    """The interrupted command may never come back (too far back in the room for the first
    sync): at start, every closed case the bot is still in is finished."""
    still_open = await _open_case(bot, "!case new autre @bob:hs-b.test")
    await bot.say("!case new genou-72 @bob:hs-b.test")
    (half_closed,) = [r for r in bot.matrix.rooms if r not in (bot.dm, still_open)]
    await bot.store.close_case(half_closed)  # recorded, but the bot never left
    joined = [r for r, room in bot.matrix.rooms.items() if bot.matrix.user_id in room.joined]
    assert await finish_interrupted_closes(bot.matrix, bot.store, bot.lifecycle, joined) == 1
    assert bot.matrix.rooms[half_closed].joined == set()
    assert bot.lifecycle.calls[-1] == ("after_bot_left", half_closed)
    assert bot.matrix.user_id in bot.matrix.rooms[still_open].joined
    joined = [r for r, room in bot.matrix.rooms.items() if bot.matrix.user_id in room.joined]
    assert await finish_interrupted_closes(bot.matrix, bot.store, bot.lifecycle, joined) == 0


# -- the journal on both databases -------------------------------------------------------------


@pytest_asyncio.fixture
async def journal(store_url: str) -> AsyncIterator[CaseJournal]:
    database = await BotDatabase.open(store_url, create=True)
    try:
        yield CaseJournal(database)
    finally:
        await database.close()


async def test_the_journal_remembers_requests_and_marks(journal: CaseJournal) -> None:
    event, room = EventId("$req"), RoomId("!r:hs-a.test")
    first = await journal.begin_request(event, ALICE)
    assert first.fresh and first.room_id is None
    again = await journal.begin_request(event, ALICE)
    assert not again.fresh and again.room_id is None
    await journal.set_request_room(event, room)
    assert (await journal.begin_request(event, ALICE)).room_id == room
    assert await journal.exported_ms(room) is None
    await journal.mark_warned(room, at_ms=5)
    await journal.mark_exported(room, at_ms=7)
    assert await journal.exported_ms(room) == 7 and await journal.warned_ms(room) == 5
    other = RoomId("!o:hs-a.test")
    assert await journal.unwarned([room, other]) == [other]


async def test_only_a_room_the_bot_created_can_be_taken_for_an_interrupted_request() -> None:
    """Anyone who can invite the bot can write any creation content, the request's mark
    included: a resumed ``!case new`` takes only a room whose creator is the bot."""
    bot_id, request = "@caducee:hs-a.test", EventId("$request")
    created = {
        "!forged:hs-b.test": {"sender": "@mallory:hs-b.test", "content": {REQUEST_MARK: request}},
        "!other:hs-a.test": {"sender": bot_id, "content": {REQUEST_MARK: "$another"}},
        "!case:hs-a.test": {"sender": bot_id, "content": {REQUEST_MARK: request}},
    }

    async def create_event(room_id: RoomId) -> dict[str, Any]:
        return created[room_id]

    found = await find_marked_room(list(created), create_event, request, bot_id)
    assert found == "!case:hs-a.test"
    assert await find_marked_room(["!forged:hs-b.test"], create_event, request, bot_id) is None
