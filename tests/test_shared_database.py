"""The bot and the bridge keep their schema revisions in their own tables, so an operator may
give both one database; databases from earlier releases (revision in Alembic's default
`alembic_version`, the bridge's old ids) are carried over on open. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from bot.ids import RoomId, UserId
from bot.store import BotDatabase, BotStore, CaseRoom, normalise_url
from bot.store.database import HISTORY as BOT_HISTORY
from bot.store.initialised import missing_database
from bridge.common.database import LEGACY_VERSION_TABLE, History
from bridge.db import HISTORY as BRIDGE_HISTORY
from bridge.db import SchemaTooNewError, open_database

ROOM = RoomId("!case:hs-a.test")
BOT_HEAD = ScriptDirectory.from_config(BOT_HISTORY.config()).get_current_head()
BRIDGE_HEAD = ScriptDirectory.from_config(BRIDGE_HISTORY.config()).get_current_head()
ALICE = UserId("@alice:hs-a.test")
T = TypeVar("T")


async def _run(url: str, work: Callable[[Connection], T]) -> T:
    engine = create_async_engine(normalise_url(url))
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(work)
    finally:
        await engine.dispose()


def _versions(sync: Connection) -> dict[str, list[str]]:
    """Every version table of the database and the revisions it holds."""
    tables = inspect(sync).get_table_names()
    return {
        t: sorted(r[0] for r in sync.execute(text(f"SELECT version_num FROM {t}")))  # noqa: S608
        for t in tables
        if t.endswith("alembic_version")
    }


def _as_an_earlier_release(
    history: History, revision: str, recorded: str
) -> Callable[[Connection], None]:
    """Migrate to `revision` the way releases before the own version tables did, recording
    the revision in `alembic_version` under the id those releases used (`recorded`)."""

    def work(sync: Connection) -> None:
        cfg = replace(history, version_table=LEGACY_VERSION_TABLE).config()
        cfg.attributes["connection"] = sync
        command.upgrade(cfg, revision)
        sync.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": recorded})

    return work


async def test_the_bot_and_the_bridge_share_one_database(store_url: str) -> None:
    bridge = await open_database(store_url, create=True)
    await bridge.close()
    database = await BotDatabase.open(
        store_url, create=True
    )  # the bridge's revision is not the bot's
    await BotStore(database).add_case(CaseRoom(ROOM, "genou", ALICE, 60, created_ms=1))
    await database.close()
    bridge = await open_database(store_url, create=False)  # and again, the other way round
    await bridge.close()
    assert await missing_database(store_url) is None
    versions = await _run(store_url, _versions)
    assert versions == {"bot_alembic_version": [BOT_HEAD], "bridge_alembic_version": [BRIDGE_HEAD]}


async def test_a_bot_database_of_an_earlier_release_is_carried_over(store_url: str) -> None:
    await _run(store_url, _as_an_earlier_release(BOT_HISTORY, "0002", "0002"))
    assert await missing_database(store_url) is None  # `bot run` accepts it before migrating
    database = await BotDatabase.open(store_url)
    try:
        case = CaseRoom(ROOM, "genou", ALICE, 60, created_ms=1)
        await BotStore(database).add_case(case)  # 0003 ran: the case lifecycle tables exist
    finally:
        await database.close()
    assert await _run(store_url, _versions) == {"bot_alembic_version": [BOT_HEAD]}
    again = await BotDatabase.open(store_url)  # carried over once: a plain reopen now
    await again.close()


@pytest.mark.parametrize(
    ("revision", "recorded"),
    [("0002", "0003"), ("0003", "0004_registry")],  # the ids earlier releases wrote
)
async def test_a_bridge_database_of_an_earlier_release_is_carried_over(
    store_url: str, revision: str, recorded: str
) -> None:
    await _run(store_url, _as_an_earlier_release(BRIDGE_HISTORY, revision, recorded))
    database = await open_database(store_url, create=False)  # `bridge run` accepts it
    try:
        async with database.engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    finally:
        await database.close()
    assert "registry_member" in tables  # the renamed 0003 (registry) ran when it was missing
    assert await _run(store_url, _versions) == {"bridge_alembic_version": [BRIDGE_HEAD]}


async def test_an_earlier_release_database_of_the_other_service_is_left_alone(
    store_url: str,
) -> None:
    """A bridge database of an earlier release, given to the bot: the bot adds its own tables
    and its own version table, and the bridge still carries its revision over afterwards."""
    await _run(store_url, _as_an_earlier_release(BRIDGE_HISTORY, "0003", "0004_registry"))
    database = await BotDatabase.open(store_url, create=True)
    await database.close()
    assert await _run(store_url, _versions) == {
        "alembic_version": ["0004_registry"],
        "bot_alembic_version": [BOT_HEAD],
    }
    bridge = await open_database(store_url)
    await bridge.close()
    assert await _run(store_url, _versions) == {
        "bot_alembic_version": [BOT_HEAD],
        "bridge_alembic_version": [BRIDGE_HEAD],
    }


async def test_a_newer_revision_in_the_legacy_table_is_still_refused(store_url: str) -> None:
    await _run(store_url, _as_an_earlier_release(BRIDGE_HISTORY, "0003", "0099_future"))
    with pytest.raises(SchemaTooNewError, match="0099_future"):
        await open_database(store_url)
