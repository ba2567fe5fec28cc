"""``!expire`` through the real dispatcher and store, over the in-memory Matrix of the
commands' tests: who may change the lifetime, bounds, what members are told."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest_asyncio

from bot.commands.builtin import default_registry
from bot.commands.context import CommandSettings, IncomingMessage
from bot.commands.dispatcher import CommandDispatcher
from bot.expiry.command import describe_policy, expire_command, parse_expire
from bot.expiry.engine import ExpiryEngine
from bot.expiry.policy import RETENTION_EVENT, retention_content
from bot.expiry.ports import Page, RedactFailure
from bot.expiry.store import ExpiryStore, NewEntry
from bot.ids import EventId, RoomId, UserId
from bot.store import BotDatabase, BotStore, CaseRoom
from tests.bot_commands_support import FakeMatrix, sqlite_url

ALICE = UserId("@alice:hs-a.test")  # opened the case
BOB = UserId("@bob:hs-b.test")  # member
CAROL = UserId("@carol:hs-a.test")  # room admin
SETTINGS = CommandSettings(
    default_ttl_seconds=7 * 86400,
    min_ttl_seconds=30,
    max_ttl_seconds=28 * 86400,
    member_servers=frozenset({"hs-a.test", "hs-b.test"}),
)
_ids = itertools.count()


class NoMatrix:
    """The engine's Matrix port; `!expire` never redacts or reads history itself."""

    user_id = UserId("@caducee:hs-a.test")

    async def redact(self, room_id: RoomId, event_id: EventId, txn_id: str) -> RedactFailure | None:
        raise AssertionError("!expire must not redact")

    async def history(self, room_id: RoomId, from_token: str | None, limit: int) -> Page:
        raise AssertionError("!expire must not read history")


@dataclass
class Setup:
    matrix: FakeMatrix
    store: BotStore
    schedule: ExpiryStore
    engine: ExpiryEngine
    dispatcher: CommandDispatcher
    room: RoomId

    async def say(self, body: str, sender: UserId) -> str:
        before = len(self.matrix.notices_in(self.room))
        await self.dispatcher.handle(
            IncomingMessage(self.room, EventId(f"$cmd{next(_ids)}"), sender, body, 0, False)
        )
        notices = self.matrix.notices_in(self.room)
        assert len(notices) == before + 1, notices
        return notices[-1]


@pytest_asyncio.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    url = sqlite_url(tmp_path)
    database = await BotDatabase.open(url, create=True)
    store, schedule = BotStore(database), ExpiryStore(database)
    matrix = FakeMatrix()
    room = matrix.add_room([ALICE, BOB, CAROL], power={ALICE: 100, CAROL: 100})
    await store.add_case(CaseRoom(room, "genou-72", ALICE, 86400, created_ms=0))
    engine = ExpiryEngine(
        schedule=schedule, cases=store, matrix=NoMatrix(), server_name="hs-a.test"
    )
    registry = default_registry()
    registry.add(expire_command(engine))
    dispatcher = CommandDispatcher(
        actions=matrix,
        store=store,
        directory=None,  # type: ignore[arg-type]
        settings=SETTINGS,
        registry=registry,
    )
    yield Setup(matrix, store, schedule, engine, dispatcher, room)
    await database.close()


async def test_members_see_the_policy_and_the_next_expiry(setup: Setup) -> None:
    assert "No message waiting to expire" in await setup.say("!expire", BOB)
    far = 10**13
    await setup.schedule.add([NewEntry(setup.room, EventId("$m"), far - 86_400_000, far)])
    reply = await setup.say("!expire", BOB)
    assert "erased 1d after they are sent" in reply
    assert "Next message expires in" in reply


async def test_the_creator_changes_the_lifetime_for_everyone(setup: Setup) -> None:
    await setup.schedule.add([NewEntry(setup.room, EventId("$m"), 1_000, 1_000 + 86_400_000)])
    reply = await setup.say("!expire 15m", ALICE)
    assert "1d → 15m" in reply and ALICE in reply  # announced in the room, with who
    case = await setup.store.get_case(setup.room)
    assert case is not None and case.ttl_seconds == 900
    assert setup.matrix.rooms[setup.room].state[(RETENTION_EVENT, "")] == retention_content(900_000)
    assert await setup.engine.next_expiry_ms(setup.room) == 1_000 + 900_000


async def test_a_room_admin_may_change_it_a_plain_member_may_not(setup: Setup) -> None:
    assert "24h" not in await setup.say("!expire 24h", CAROL)
    refused = await setup.say("!expire 30s", BOB)
    assert "Only the practitioner who opened this case or a room admin" in refused
    case = await setup.store.get_case(setup.room)
    assert case is not None and case.ttl_seconds == 86400  # Carol's change, not Bob's


async def test_lifetimes_outside_the_federation_bounds_are_refused(setup: Setup) -> None:
    too_short = await setup.say("!expire 10s", ALICE)
    assert "outside the federation's bounds (30s to 4w)" in too_short
    assert "not a duration" in await setup.say("!expire soon", ALICE)
    assert "One duration" in await setup.say("!expire 1d 12h", ALICE)
    case = await setup.store.get_case(setup.room)
    assert case is not None and case.ttl_seconds == 86400
    assert (RETENTION_EVENT, "") not in setup.matrix.rooms[setup.room].state


def test_parse_and_describe_are_pure() -> None:
    assert parse_expire([], SETTINGS).seconds is None
    assert parse_expire(["1d12h"], SETTINGS).seconds == 129_600
    text = describe_policy(3600, next_due_ms=10_000, now_ms=4_000)
    assert "1h" in text and "in 6s" in text
    assert "now" in describe_policy(3600, next_due_ms=1, now_ms=4_000)
