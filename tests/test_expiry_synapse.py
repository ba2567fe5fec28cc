"""The expiry engine against real homeservers: hs_a hosts the bot, hs_b a remote member.

Lifetimes of a few seconds; the homeservers run retention purge jobs every second. What a
member's client blanks is observed through syncing witnesses on each server; what is left in
a homeserver's database is read from its SQLite file.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from bot.expiry.close import ExpiryLifecycle
from bot.expiry.engine import ExpirySettings
from bot.ids import RoomId
from bot.store import BotDatabase, BotStore
from deploy.local.federation import Homeserver
from tests.expiry_support import (
    ExpiryBot,
    Raw,
    Witness,
    create_case_room,
    rows_in_db,
    sqlite_db_url,
)
from tests.matrix_helpers import eventually

pytestmark = pytest.mark.slow

MAX_LATENESS_MS = 10_000


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # A stuck request fails with its own traceback long before the test times out.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


@pytest_asyncio.fixture
async def cases(tmp_path: Path) -> AsyncIterator[BotStore]:
    database = await BotDatabase.open(sqlite_db_url(tmp_path), create=True)
    yield BotStore(database)
    await database.close()


async def _people(
    hs_a: Homeserver, hs_b: Homeserver, http: aiohttp.ClientSession
) -> tuple[Raw, Raw, Raw]:
    bot = await Raw.register(hs_a, http, "expirybot")
    alice = await Raw.register(hs_a, http, "alice")
    bob = await Raw.register(hs_b, http, "bob")
    return bot, alice, bob


def _assert_timely(sent: dict[str, int], redacted: dict[str, int], lifetime_ms: int) -> None:
    for event_id, origin in sent.items():
        late = redacted[event_id] - (origin + lifetime_ms)
        assert late >= 0, f"{event_id} redacted {-late} ms before its lifetime ended"
        assert late <= MAX_LATENESS_MS, f"{event_id} redacted {late} ms late"


async def test_local_and_remote_messages_expire_on_both_servers_and_leave_their_databases(
    hs_a: Homeserver,
    hs_b: Homeserver,
    http: aiohttp.ClientSession,
    cases: BotStore,
    tmp_path: Path,
) -> None:
    bot_user, alice, bob = await _people(hs_a, hs_b, http)
    room = await create_case_room(bot_user, 4, [alice, bob], cases)
    await cases.database.close()  # the bot below opens its own
    witnesses = [Witness(alice), Witness(bob)]
    for witness in witnesses:
        await witness.start()
    bot = ExpiryBot(hs_a, bot_user.user, sqlite_db_url(tmp_path))
    await bot.start()
    try:
        sent: dict[str, int] = {}
        for sender in (alice, bob, alice, bob, bot_user):  # the bot's own messages expire too
            event_id, ts = await sender.send(room)
            sent[event_id] = ts
        ids = list(sent)
        for witness in witnesses:  # members' clients on both servers blank every message
            _assert_timely(sent, await witness.wait_redacted(ids), 4_000)
        bot.check_alive()

        async def purged() -> bool | None:
            left = sum(rows_in_db(hs, "events", ids) for hs in (hs_a, hs_b))
            return True if left == 0 else None

        await eventually(purged, timeout=40.0)  # Synapse's retention removes the originals
        assert rows_in_db(hs_a, "event_json", ids) == rows_in_db(hs_b, "event_json", ids) == 0
    finally:
        await bot.stop()
        for witness in witnesses:
            await witness.stop()


async def test_an_expired_attachment_leaves_the_media_store(
    hs_a: Homeserver,
    hs_b: Homeserver,
    http: aiohttp.ClientSession,
    cases: BotStore,
    tmp_path: Path,
) -> None:
    bot_user, alice, _bob = await _people(hs_a, hs_b, http)
    room = await create_case_room(bot_user, 3, [alice], cases)
    await cases.database.close()  # the bot below opens its own
    bot = ExpiryBot(
        hs_a,
        bot_user.user,
        sqlite_db_url(tmp_path),
        settings=ExpirySettings(idle_poll_s=1.0, delete_media=True),
    )
    engine = await bot.start()
    witness = Witness(alice)
    await witness.start()
    try:
        mxc = await alice.upload(os.urandom(1024))  # encrypted by clients: random bytes
        server, media_id = mxc.removeprefix("mxc://").split("/")
        admin = Raw(hs_a, alice.user, http)
        admin_headers = {"Authorization": f"Bearer {hs_a.admin_token}"}
        info_url = f"{hs_a.client_url}/_synapse/admin/v1/media/{server}/{media_id}"
        async with http.get(info_url, headers=admin_headers) as response:
            assert response.status == 200
        event_id, ts = await admin.send(room)
        # What the shell does once it has decrypted the event: pass the attachment's URI.
        engine.observe(room, event_id, ts, "m.room.encrypted", False, media=[mxc])
        await engine.persist()
        await witness.wait_redacted([event_id])

        async def media_gone() -> bool | None:
            async with http.get(info_url, headers=admin_headers) as response:
                return True if response.status == 404 else None

        await eventually(media_gone, timeout=15.0)
        bot.check_alive()
    finally:
        await bot.stop()
        await witness.stop()


async def test_engine_stopped_mid_run_catches_up_after_restart_even_with_an_early_token(
    hs_a: Homeserver,
    hs_b: Homeserver,
    http: aiohttp.ClientSession,
    cases: BotStore,
    tmp_path: Path,
) -> None:
    bot_user, alice, bob = await _people(hs_a, hs_b, http)
    lifetime_s = 5
    room = await create_case_room(bot_user, lifetime_s, [alice, bob], cases)
    await cases.database.close()  # the bot below opens its own
    witness = Witness(alice)
    await witness.start()
    url = sqlite_db_url(tmp_path)
    bot = ExpiryBot(hs_a, bot_user.user, url)
    engine = await bot.start()
    try:
        before = dict([await alice.send(room), await bob.send(room)])

        async def persisted() -> bool | None:
            known = await engine.schedule.known(room, before)
            return True if len(known) == 2 else None

        await eventually(persisted)
        await bot.stop()  # crash: tasks cancelled, nothing flushed
        during = dict([await bob.send(room), await alice.send(room), await bob.send(room)])
        # Worst case: the previous process saved a sync token past these events without
        # persisting them (as a shell that acknowledges early would): skip them in sync.
        skip = await bot_user.call("GET", "/_matrix/client/v3/sync", timeout="0")

        overdue_at = max(during.values()) + lifetime_s * 1000

        async def all_overdue() -> bool | None:
            latest = await bob.send(room)  # the server's clock says when they are overdue
            during[latest[0]] = latest[1]
            return True if latest[1] > overdue_at else None

        await eventually(all_overdue, timeout=30.0, every=1.0)
        restarted_at = (await alice.send(room))[1]
        await bot.start(since=str(skip["next_batch"]))
        redacted = await witness.wait_redacted([*before, *during], timeout=40.0)
        for event_id in during:
            due = during[event_id] + lifetime_s * 1000
            assert redacted[event_id] - max(due, restarted_at) <= MAX_LATENESS_MS
        bot.check_alive()
    finally:
        await bot.stop()
        await witness.stop()


async def test_a_gappy_sync_is_back_filled(
    hs_a: Homeserver,
    hs_b: Homeserver,
    http: aiohttp.ClientSession,
    cases: BotStore,
    tmp_path: Path,
) -> None:
    bot_user, alice, bob = await _people(hs_a, hs_b, http)
    room = await create_case_room(bot_user, 4, [alice, bob], cases)
    await cases.database.close()  # the bot below opens its own
    witness = Witness(alice)
    await witness.start()
    url = sqlite_db_url(tmp_path)
    bot = ExpiryBot(hs_a, bot_user.user, url, timeline_limit=2)
    engine = await bot.start()
    try:
        await eventually(lambda: _synced(bot))
        await bot.pause_sync()
        burst = dict([await (alice if i % 2 else bob).send(room) for i in range(12)])
        bot.resume_sync()  # same token: the next sync returns 2 of 12 events, `limited`
        await witness.wait_redacted(list(burst), timeout=40.0)

        async def all_recorded() -> bool | None:
            finished = {f.event_id for f in await engine.schedule.finished()}
            return True if set(burst) <= finished else None

        # A member's client can see a redaction before the engine, whose request it answered,
        # has recorded it as done (a loaded machine showed it): wait for the record too.
        await eventually(all_recorded, timeout=30.0)
        bot.check_alive()
    finally:
        await bot.stop()
        await witness.stop()


async def _synced(bot: ExpiryBot) -> bool | None:
    return True if bot.token is not None else None


async def test_closing_a_case_redacts_everything_now_and_purges_the_room(
    hs_a: Homeserver,
    hs_b: Homeserver,
    http: aiohttp.ClientSession,
    cases: BotStore,
    tmp_path: Path,
) -> None:
    bot_user, alice, bob = await _people(hs_a, hs_b, http)
    room = await create_case_room(bot_user, 3600, [alice, bob], cases)
    case = await cases.get_case(room)
    assert case is not None
    await cases.database.close()  # the bot below opens its own
    witness = Witness(bob)
    await witness.start()
    bot = ExpiryBot(hs_a, bot_user.user, sqlite_db_url(tmp_path))
    engine = await bot.start()
    try:
        sent = dict([await alice.send(room), await bob.send(room), await alice.send(room)])
        lifecycle = ExpiryLifecycle(engine, redact_timeout_s=30)
        await lifecycle.before_members_removed(case)  # an hour early: closing means now
        await witness.wait_redacted(list(sent), timeout=10.0)
        await bot_user.call("POST", f"/_matrix/client/v3/rooms/{room}/leave", {})
        await lifecycle.after_bot_left(case)
        admin_headers = {"Authorization": f"Bearer {hs_a.admin_token}"}
        async with http.get(
            f"{hs_a.client_url}/_synapse/admin/v1/rooms/{room}", headers=admin_headers
        ) as response:
            assert response.status == 404
        assert rows_in_db(hs_a, "events", list(sent)) == 0
        assert await engine.schedule.pending_count(RoomId(room)) == 0
    finally:
        await bot.stop()
        await witness.stop()
