"""On the deployment's PostgreSQL, the bot and the bridge migrate at start and refuse a
database that a newer version migrated (an operator rolling back the code must restore a
backup rather than run old code on a newer schema)."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.deploy_stack import PG_HOST, PG_PORT, PG_USER, create_database, drop_database
from tests.deploy_stack import services_missing as _services_missing

pytestmark = [pytest.mark.postgres]

_missing = _services_missing()
if _missing and "PostgreSQL" in _missing:
    pytestmark.append(pytest.mark.skip(reason=_missing))

FUTURE = "9999_from_a_newer_version"


@pytest_asyncio.fixture(loop_scope="session")
async def database_url() -> AsyncIterator[str]:
    name = f"caducee_t_schema_{uuid.uuid4().hex[:8]}"
    await create_database(name)
    try:
        yield f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        await drop_database(name)


async def _stamp_future(url: str, version_table: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"UPDATE {version_table} SET version_num = :v"), {"v": FUTURE})  # noqa: S608
    finally:
        await engine.dispose()


async def test_bot_store_migrates_then_refuses_a_newer_schema(database_url: str) -> None:
    from bot.store import BotDatabase, SchemaTooNewError

    database = await BotDatabase.open(database_url, create=True)  # migrations run at start
    await database.close()
    await _stamp_future(database_url, "bot_alembic_version")
    with pytest.raises(SchemaTooNewError, match=FUTURE):
        await BotDatabase.open(database_url, create=True)


@pytest.mark.skipif(
    importlib.util.find_spec("bridge.db") is None, reason="the bridge database module is absent"
)
async def test_bridge_database_migrates_then_refuses_a_newer_schema(database_url: str) -> None:
    from bridge.db import SchemaTooNewError, open_database

    database = await open_database(database_url, create=True)
    await database.close()
    await _stamp_future(database_url, "bridge_alembic_version")
    with pytest.raises(SchemaTooNewError, match=FUTURE):
        await open_database(database_url)
