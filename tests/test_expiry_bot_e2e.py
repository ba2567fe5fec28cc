"""Expiry through the real bot: E2EE doctors on two homeservers, `!case new ... ttl=`,
messages redacted for both, `!expire`, and `!case close` redacting and purging.

The bot is the production one: `BotRunner` (login, crypto, cross-signing, sync, router) with
the handler `caducee bot run` uses, so the expiry engine's wiring is what is tested.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from bot.cases.lifetime import lifetime_topic
from bot.expiry.admin import write_admin_token
from bot.runner import BotRunner
from deploy.local.federation import Homeserver, RegisteredUser
from tests.conftest_bot import bot_config, start_bot
from tests.expiry_support import Raw, Witness
from tests.matrix_helpers import Doctor, eventually, open_case

pytestmark = pytest.mark.slow

LIFETIME_S = 6


@pytest_asyncio.fixture
async def bot(hs_a: Homeserver, hs_b: Homeserver, tmp_path: Path) -> AsyncIterator[BotRunner]:
    """The bot exactly as `caducee bot run` wires it (`bot.app.production_handler`), with a
    server admin token file so that it lifts its rate limits and purges closed rooms."""
    token_file = tmp_path / "admin-token"
    write_admin_token(token_file, hs_a.admin_token)
    config = await bot_config(
        hs_a,
        tmp_path / "bot",
        [hs_a.server_name, hs_b.server_name],
        min_ttl="2s",
        default_ttl="1h",
        max_ttl="1d",
        admin_token_file=str(token_file),
    )
    runner = await start_bot(config)
    yield runner
    await runner.stop()


def _witness(doctor: Doctor, hs: Homeserver, http: aiohttp.ClientSession) -> Witness:
    client = doctor.client
    user = RegisteredUser(str(client.user_id), str(client.access_token), "", "")
    return Witness(Raw(hs, user, http))


async def test_case_room_messages_expire_for_doctors_on_both_servers_then_close_purges(
    bot: BotRunner, hs_a: Homeserver, hs_b: Homeserver, tmp_path: Path
) -> None:
    alice = await Doctor.create(hs_a, tmp_path, name="alice")
    bob = await Doctor.create(hs_b, tmp_path, name="bob")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        witnesses = [_witness(alice, hs_a, http), _witness(bob, hs_b, http)]
        try:
            case = await open_case(
                bot.user_id, alice, [bob], f"expiry-e2e {bob.user_id} ttl={LIFETIME_S}s"
            )
            room = case.room
            for witness in witnesses:
                await witness.start()

            sent_at = time.time() * 1000
            sent = [await alice.send(room, "note clinique A"), await bob.send(room, "avis B")]
            for witness in witnesses:
                redacted = await witness.wait_redacted(sent, timeout=LIFETIME_S + 20)
                for ts in redacted.values():  # not early, and within the 10 s grace
                    assert sent_at + LIFETIME_S * 1000 - 1000 <= ts
                    assert ts <= time.time() * 1000

            mark = len(alice.seen)
            await alice.send(room, "!expire")
            shown = await alice.wait_for_text(bot.user_id, lambda b: "6s" in b, after=mark)
            assert "Messages in this room are erased 6s after" in shown.body
            await alice.send(room, "!expire 1h")
            await alice.wait_for_text(bot.user_id, lambda b: "6s → 1h" in b, after=mark)
            # The topic, which every member sees and which does not expire, follows too.
            topic = await alice.client.room_get_state_event(room, "m.room.topic")
            assert topic.content == {"topic": lifetime_topic(3600)}, topic

            kept = await bob.send(room, "message sous 1h de durée de vie")
            mark = len(alice.seen)
            await alice.send(room, "!case close")  # never exported: asks first
            await alice.wait_for_text(bot.user_id, lambda b: "close confirm" in b, after=mark)
            await alice.send(room, "!case close confirm")
            await witnesses[1].wait_redacted([kept], timeout=30)  # an hour early: closed

            async def purged() -> bool | None:
                headers = {"Authorization": f"Bearer {hs_a.admin_token}"}
                url = f"{hs_a.client_url}/_synapse/admin/v1/rooms/{room}"
                async with http.get(url, headers=headers) as response:
                    return True if response.status == 404 else None

            await eventually(purged, timeout=60)
        finally:
            for witness in witnesses:
                await witness.stop()
            await alice.close()
            await bob.close()
