"""The admin tables on SQLite and PostgreSQL: audit order and paging, console sessions
(hashed, expiring), activation links spent once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
import sqlalchemy as sa

from bridge.admin import accounts, audit
from bridge.console import sessions
from bridge.db import Database
from tests.admin_support import bridge_database

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@pytest_asyncio.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with bridge_database(request.param, tmp_path) as opened:
        yield opened


async def test_audit_is_newest_first_paged_and_filtered(db: Database) -> None:
    async with db.sessions.begin() as s:
        for n in range(5):
            await audit.record(
                s,
                at=T0 + timedelta(minutes=n),
                actor="@a:x",
                action="lock" if n % 2 else "onboard",
                target=f"@p{n}:x",
                rpps=str(n),
            )
    async with db.sessions() as s:
        page = await audit.recent(s, limit=2, offset=1)
        locks = await audit.recent(s, action="lock")
    assert [e.target for e in page] == ["@p3:x", "@p2:x"]
    assert [e.target for e in locks] == ["@p3:x", "@p1:x"]
    assert page[0].detail == {"rpps": "3"} and page[0].detail_text() == "rpps=3"


async def test_audit_refuses_a_secret_and_writes_nothing(db: Database) -> None:
    with pytest.raises(ValueError, match="secret"):
        async with db.sessions.begin() as s:
            await audit.record(s, at=T0, actor="@a:x", action="onboard", password="hunter2")
    async with db.sessions() as s:
        assert await audit.recent(s) == []


async def test_console_sessions_store_only_a_hash_and_expire(db: Database) -> None:
    async with db.sessions.begin() as s:
        secret = await sessions.open_session(s, "@a:x", now=T0, lifetime=timedelta(hours=1))
    async with db.sessions() as s:
        stored = await s.scalar(sa.text("SELECT id_hash FROM admin_console_session"))
        found = await sessions.find_session(s, secret, now=T0 + timedelta(minutes=59))
        late = await sessions.find_session(s, secret, now=T0 + timedelta(hours=1))
        wrong = await sessions.find_session(s, secret + "x", now=T0)
    assert stored != secret and secret not in str(stored)
    assert found is not None and found.user_id == "@a:x"
    assert late is None and wrong is None
    async with db.sessions.begin() as s:
        await sessions.close_session(s, secret)
    async with db.sessions() as s:
        assert await sessions.find_session(s, secret, now=T0) is None


def test_csrf_tokens_belong_to_their_session() -> None:
    one, two = sessions.new_secret(), sessions.new_secret()
    assert sessions.csrf_ok(one, sessions.csrf_token(one))
    assert not sessions.csrf_ok(two, sessions.csrf_token(one))
    assert not sessions.csrf_ok(one, "")


async def test_activation_links_are_spent_once(db: Database) -> None:
    async with db.sessions.begin() as s:
        await accounts.add_activation(
            s, "@p:x", "secret-1", at=T0, expires_at=T0 + timedelta(days=1)
        )
    async with db.sessions.begin() as s:
        assert await accounts.use_activation(s, "secret-1", at=T0)
    async with db.sessions.begin() as s:
        assert not await accounts.use_activation(s, "secret-1", at=T0)
        found = await accounts.find_activation(s, "secret-1")
        assert found is not None and found[0] == "@p:x" and found[2] is not None
        assert await accounts.find_activation(s, "secret-2") is None
