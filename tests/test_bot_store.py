"""The bot's database on SQLite and PostgreSQL: migrations, version refusal, exactly-once
claims, case rooms and audit."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from bot.cases.journal import CaseJournal
from bot.expiry.store import ExpiryStore
from bot.ids import EventId, RoomId, UserId
from bot.store import (
    BotDatabase,
    BotStore,
    CaseRoom,
    Claim,
    SchemaTooNewError,
    StoreError,
    normalise_url,
)
from bot.store.models import Base

ROOM = RoomId("!case:hs-a.test")
ALICE = UserId("@alice:hs-a.test")


@pytest_asyncio.fixture
async def store(store_url: str) -> AsyncIterator[BotStore]:
    database = await BotDatabase.open(store_url, create=True)
    try:
        yield BotStore(database)
    finally:
        await database.close()


async def test_open_creates_the_schema_and_reopening_keeps_data(store_url: str) -> None:
    first = await BotDatabase.open(store_url, create=True)
    await BotStore(first).add_case(CaseRoom(ROOM, "genou-72", ALICE, 3600, created_ms=1))
    await first.close()
    second = await BotDatabase.open(store_url, create=True)
    try:
        case = await BotStore(second).get_case(ROOM)
        assert case == CaseRoom(ROOM, "genou-72", ALICE, 3600, created_ms=1)
    finally:
        await second.close()


async def test_every_store_stamps_with_the_database_clock(store_url: str) -> None:
    """One clock for the bot, given when the database is opened (tests pass a fixed one)."""
    database = await BotDatabase.open(store_url, clock=lambda: 1_234, create=True)
    try:
        store, schedule = BotStore(database), ExpiryStore(database)
        await store.claim_command(EventId("$t"), ROOM, "find")
        await store.finish_command(
            EventId("$t"), sender=ALICE, room_id=ROOM, command_name="find", outcome="ok"
        )
        await store.record_audit(ALICE, ROOM, "identity-reset", "pending")
        assert [e.ts_ms for e in await store.audit_entries()] == [1_234, 1_234]
        assert await store.prune_processed(older_than_ms=1_235) == 1  # claimed at 1_234
        await store.add_case(CaseRoom(ROOM, "a", ALICE, 60, created_ms=1))
        await store.close_case(ROOM)
        case = await store.get_case(ROOM)
        assert case is not None and case.closed_ms == 1_234
        assert schedule.now_ms() == 1_234
        request = await CaseJournal(database).begin_request(EventId("$new"), ALICE)
        assert request.fresh
    finally:
        await database.close()


def _ours(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
    """Compare only the tables this store maps (the expiry engine maps its own)."""
    if type_ == "table":
        return name in Base.metadata.tables
    table = parent_names.get("table_name")
    return table is None or table in Base.metadata.tables


async def test_migrations_produce_exactly_the_models(store_url: str) -> None:
    await (await BotDatabase.open(store_url, create=True)).close()
    engine = create_async_engine(normalise_url(store_url))
    try:
        async with engine.connect() as conn:
            diffs = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"include_name": _ours}), Base.metadata
                )
            )
            tables = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    finally:
        await engine.dispose()
    assert diffs == []
    assert {"case_rooms", "processed_commands", "audit", "expiry_schedule"} <= tables


async def test_a_database_from_a_newer_bot_is_refused(store_url: str) -> None:
    await (await BotDatabase.open(store_url, create=True)).close()
    engine = create_async_engine(normalise_url(store_url))
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE bot_alembic_version SET version_num = '0099_future'"))
    finally:
        await engine.dispose()
    with pytest.raises(SchemaTooNewError, match=r"0099_future.*newer bot"):
        await BotDatabase.open(store_url, create=True)


async def test_claim_is_new_then_interrupted_then_done(store: BotStore) -> None:
    event = EventId("$cmd1")
    assert await store.claim_command(event, ROOM, "find") is Claim.NEW
    # Seen again before it finished: the bot stopped in the middle.
    assert await store.claim_command(event, ROOM, "find") is Claim.INTERRUPTED
    await store.finish_command(
        event, sender=ALICE, room_id=ROOM, command_name="find", outcome="ok", at_ms=42
    )
    assert await store.claim_command(event, ROOM, "find") is Claim.DONE
    assert await store.claim_command(EventId("$other"), ROOM, "find") is Claim.NEW


async def test_concurrent_claims_of_one_event_admit_exactly_one(store: BotStore) -> None:
    claims = await asyncio.gather(
        *(store.claim_command(EventId("$same"), ROOM, "case new") for _ in range(8))
    )
    assert claims.count(Claim.NEW) == 1
    assert set(claims) == {Claim.NEW, Claim.INTERRUPTED}


async def test_audit_records_who_what_where_when_and_outcome_only(store: BotStore) -> None:
    await store.claim_command(EventId("$a"), ROOM, "case new")
    await store.finish_command(
        EventId("$a"), sender=ALICE, room_id=ROOM, command_name="case new", outcome="ok", at_ms=7
    )
    await store.claim_command(EventId("$b"), ROOM, "find")
    await store.finish_command(
        EventId("$b"), sender=ALICE, room_id=ROOM, command_name="find", outcome="usage", at_ms=9
    )
    entries = await store.audit_entries()
    assert [(e.command, e.outcome, e.ts_ms) for e in entries] == [
        ("find", "usage", 9),
        ("case new", "ok", 7),
    ]
    assert entries[0].sender == ALICE and entries[0].room_id == ROOM
    columns = {c.name for c in Base.metadata.tables["audit"].columns}
    assert columns == {"id", "ts_ms", "sender", "room_id", "command", "outcome"}


async def test_audit_lines_outside_commands_are_recorded_and_bounded(store: BotStore) -> None:
    """Identity resets are audited without a command event (and possibly without a room)."""
    await store.record_audit(ALICE, "", "identity-reset", "pending", at_ms=5)
    await store.record_audit(ALICE, ROOM, "identity-reset", "x" * 40, at_ms=6)
    entries = await store.audit_entries()
    assert [(e.room_id, e.command, e.outcome, e.ts_ms) for e in entries] == [
        (ROOM, "identity-reset", "x" * 32, 6),  # cut to the column, not refused
        ("", "identity-reset", "pending", 5),
    ]


async def test_the_latest_outcome_of_a_users_identity_reset_is_found(store: BotStore) -> None:
    """What the bot tells the bridge about a reset that ended (`bot.identity.report`)."""
    bob = UserId("@bob:hs-a.test")
    await store.record_audit(ALICE, "", "identity-reset", "pending", at_ms=5)
    await store.record_audit(bob, "", "identity-reset", "pending", at_ms=6)
    await store.record_audit(ALICE, ROOM, "identity-reset", "confirmed-by-session", at_ms=7)
    await store.record_audit(ALICE, ROOM, "!help", "ok", at_ms=8)
    assert await store.latest_outcome(ALICE, "identity-reset") == "confirmed-by-session"
    assert await store.latest_outcome(bob, "identity-reset") == "pending"
    assert await store.latest_outcome("@nobody:hs-a.test", "identity-reset") is None


async def test_case_rooms_open_close_and_lifetime(store: BotStore) -> None:
    other = RoomId("!other:hs-b.test")
    await store.add_case(CaseRoom(ROOM, "a", ALICE, 60, created_ms=2))
    await store.add_case(CaseRoom(other, "b", ALICE, 60, created_ms=1))
    with pytest.raises(StoreError, match="already recorded"):
        await store.add_case(CaseRoom(ROOM, "dup", ALICE, 60, created_ms=3))
    assert [c.room_id for c in await store.open_cases()] == [other, ROOM]

    assert await store.set_case_ttl(ROOM, 7200) is True
    assert await store.close_case(ROOM, at_ms=99) is True
    assert await store.close_case(ROOM, at_ms=100) is False  # already closed
    assert await store.set_case_ttl(ROOM, 60) is False  # closed cases keep their lifetime
    case = await store.get_case(ROOM)
    assert case is not None and case.ttl_seconds == 7200 and case.closed_ms == 99
    assert not case.is_open
    assert [c.room_id for c in await store.open_cases()] == [other]
    assert await store.get_case(RoomId("!nope:hs-a.test")) is None


async def test_direct_rooms_are_recorded_replaced_and_forgotten_per_user(store: BotStore) -> None:
    bob = UserId("@bob:hs-b.test")
    first, second = RoomId("!dm1:hs-a.test"), RoomId("!dm2:hs-a.test")
    assert await store.direct_room(ALICE) is None
    await store.record_direct_room(ALICE, first)
    await store.record_direct_room(bob, second)
    assert await store.direct_room(ALICE) == first
    await asyncio.gather(*(store.record_direct_room(ALICE, second) for _ in range(4)))
    assert await store.direct_room(ALICE) == second  # one row per user, the latest room
    await store.forget_direct_room(ALICE, first)  # an older room: the newer record stays
    assert await store.direct_room(ALICE) == second
    await store.forget_direct_room(ALICE, second)
    assert await store.direct_room(ALICE) is None
    assert await store.direct_room(bob) == second  # others' records untouched


async def test_prune_forgets_only_old_finished_commands(store: BotStore) -> None:
    for event, at in (("$old", 10), ("$new", 1000)):
        await store.claim_command(EventId(event), ROOM, "find", at_ms=at)
        await store.finish_command(
            EventId(event), sender=ALICE, room_id=ROOM, command_name="find", outcome="ok"
        )
    await store.claim_command(EventId("$running"), ROOM, "find", at_ms=10)
    assert await store.prune_processed(older_than_ms=500) == 1
    assert await store.claim_command(EventId("$old"), ROOM, "find") is Claim.NEW
    assert await store.claim_command(EventId("$new"), ROOM, "find") is Claim.DONE
    assert await store.claim_command(EventId("$running"), ROOM, "find") is Claim.INTERRUPTED


async def test_sqlite_file_is_private_and_migrations_do_not_depend_on_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # script location comes from the package, not the cwd
    path = tmp_path / "sub" / "bot.db"
    database = await BotDatabase.open(f"sqlite:///{path}", create=True)
    await database.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_urls_get_their_async_driver_and_others_are_refused() -> None:
    assert normalise_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert normalise_url("postgresql://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert normalise_url("postgres://u@h/db") == "postgresql+asyncpg://u@h/db"
    with pytest.raises(StoreError, match="unsupported database URL"):
        normalise_url("mysql://u@h/db")
