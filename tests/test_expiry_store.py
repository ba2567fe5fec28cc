"""The persistent schedule on SQLite and PostgreSQL: what the worker and the sync loop rely on."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from bot.expiry.store import ExpiryStore, NewEntry, Outcome
from bot.ids import EventId, RoomId
from bot.store import BotDatabase

ROOM = RoomId("!case:hs-a.test")
OTHER = RoomId("!other:hs-a.test")


@pytest_asyncio.fixture
async def schedule(store_url: str) -> AsyncIterator[ExpiryStore]:
    database = await BotDatabase.open(store_url, create=True)
    try:
        yield ExpiryStore(database)
    finally:
        await database.close()


def entry(
    event: str, origin: int, due: int, room: RoomId = ROOM, media: tuple[str, ...] = ()
) -> NewEntry:
    return NewEntry(room, EventId(event), origin, due, media)


async def test_entries_survive_a_reopen_and_duplicates_are_ignored(store_url: str) -> None:
    first = await BotDatabase.open(store_url, create=True)
    await ExpiryStore(first).add([entry("$a", 1_000, 11_000, media=("mxc://hs/blob",))])
    await first.close()  # as after kill -9: the commit is all that counts
    reopened = await BotDatabase.open(store_url, create=True)
    second = ExpiryStore(reopened)
    try:
        await second.add(
            [
                entry("$a", 1_000, 99_000, media=("mxc://hs/other",)),
                entry("$b", 2_000, 12_000),
            ]
        )
        await second.add([entry("$b", 2_000, 50_000, media=("mxc://hs/late",))])
        due = await second.ready(now=20_000, limit=10)
        assert [(d.pending.event_id, d.pending.due_ms) for d in due] == [
            ("$a", 11_000),  # the first scheduling wins
            ("$b", 12_000),
        ]
        assert due[0].media == ("mxc://hs/blob",)  # times and media of the first sighting
        assert due[1].media == ("mxc://hs/late",)  # media learnt after decryption is added
    finally:
        await reopened.close()


async def test_ready_is_overdue_first_then_oldest_across_rooms(schedule: ExpiryStore) -> None:
    await schedule.add(
        [
            entry("$late-room", 5_000, 6_000, room=OTHER),
            entry("$old", 1_000, 11_000),
            entry("$new", 2_000, 12_000),
            entry("$future", 3_000, 90_000),
        ]
    )
    due = await schedule.ready(now=20_000, limit=10)
    assert [d.pending.event_id for d in due] == ["$late-room", "$old", "$new"]
    assert [d.pending.event_id for d in await schedule.ready(now=20_000, limit=1)] == ["$late-room"]
    assert await schedule.next_try_ms() == 6_000
    assert await schedule.next_try_ms(after=20_000) == 90_000  # what falls due next


async def test_outcomes_finish_or_push_back_entries(schedule: ExpiryStore) -> None:
    await schedule.add([entry("$done", 1, 10), entry("$retry", 2, 10)])
    await schedule.record(
        [
            Outcome(ROOM, EventId("$done"), "redacted"),
            Outcome(ROOM, EventId("$retry"), None, next_try_ms=5_000),
        ],
        at=100,
    )
    assert await schedule.ready(now=4_999, limit=10) == []
    [retry] = await schedule.ready(now=5_000, limit=10)
    assert retry.pending.event_id == "$retry"
    assert retry.pending.attempts == 1
    assert await schedule.pending_count(ROOM) == 1
    [done] = await schedule.finished()
    assert (done.event_id, done.done_ms, done.outcome) == ("$done", 100, "redacted")
    known = await schedule.known(ROOM, ["$done", "$retry", "$unknown"])
    assert known == {"$done": 1, "$retry": 2}


async def test_a_new_lifetime_moves_pending_due_times(schedule: ExpiryStore) -> None:
    await schedule.add([entry("$a", 1_000, 61_000), entry("$b", 2_000, 62_000)])
    await schedule.add([entry("$elsewhere", 1_000, 61_000, room=OTHER)])
    await schedule.record([Outcome(ROOM, EventId("$b"), None, next_try_ms=500_000)], at=0)
    assert await schedule.reschedule_room(ROOM, 10_000) == 2
    assert await schedule.next_due_ms(ROOM) == 11_000
    due = await schedule.ready(now=20_000, limit=10)
    # $b was backing off until 500 s: it keeps its retry time; the other room is untouched.
    assert [d.pending.event_id for d in due] == ["$a"]
    await schedule.expedite_room(ROOM, at=20_000)
    assert [d.pending.event_id for d in await schedule.ready(now=20_000, limit=10)] == ["$a", "$b"]


async def test_gaps_are_kept_until_filled(schedule: ExpiryStore) -> None:
    await schedule.add_gap(ROOM, "t123-prev", None)
    await schedule.add_gap(OTHER, None, 42)
    first, second = await schedule.gaps()
    assert (first.room_id, first.from_token, first.until_ts) == (ROOM, "t123-prev", None)
    assert (second.room_id, second.from_token, second.until_ts) == (OTHER, None, 42)
    await schedule.delete_gap(first.id)
    assert [g.room_id for g in await schedule.gaps()] == [OTHER]


async def test_forget_and_prune(schedule: ExpiryStore) -> None:
    await schedule.add([entry("$a", 1, 10), entry("$b", 1, 10, room=OTHER)])
    await schedule.add_gap(ROOM, None, None)
    await schedule.record([Outcome(OTHER, EventId("$b"), "redacted")], at=1_000)
    await schedule.forget_room(ROOM)
    assert await schedule.pending_count(ROOM) == 0
    assert await schedule.gaps() == []
    assert await schedule.newest_ts(OTHER) == 1
    assert await schedule.prune_done(older_than_ms=999) == 0
    assert await schedule.prune_done(older_than_ms=1_001) == 1
    assert await schedule.newest_ts(OTHER) is None


async def test_large_batches_are_inserted_in_one_call(schedule: ExpiryStore) -> None:
    await schedule.add([entry(f"$e{i}", i, 1_000 + i) for i in range(1_200)])
    assert await schedule.pending_count() == 1_200
    due = await schedule.ready(now=10_000, limit=5)
    assert [d.pending.event_id for d in due] == ["$e0", "$e1", "$e2", "$e3", "$e4"]
