"""Expiry through the real bot: E2EE doctors on two homeservers, `!case new ... ttl=`,
messages redacted for both, `!expire`, and `!case close` redacting and purging.

The bot is the shell's `BotRunner` (login, crypto, cross-signing, sync, router) with the
expiry engine wired the way BOT-INTERFACE.md says: listener, `!expire` in the registry,
`ExpiryLifecycle` for closing.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from urllib.parse import unquote

import aiohttp
import pytest
import pytest_asyncio

from bot.commands.builtin import default_registry
from bot.commands.context import CommandSettings
from bot.commands.dispatcher import CommandDispatcher
from bot.config import BotConfig
from bot.events import MessageHandler
from bot.expiry.admin import SynapseExpiryAdmin
from bot.expiry.close import ExpiryLifecycle
from bot.expiry.command import expire_command
from bot.expiry.engine import ExpiryEngine, ExpirySettings
from bot.expiry.nio_matrix import ExpiryListener, NioExpiryMatrix
from bot.expiry.schedule import ExpiryStore
from bot.matrix import NioActions
from bot.runner import BotRunner, UnavailableDirectory
from bot.store import BotStore
from deploy.local.federation import Homeserver, RegisteredUser
from tests.conftest_bot import bot_config
from tests.matrix_helpers import Doctor, eventually
from tests.test_expiry_support import Raw, Witness

pytestmark = pytest.mark.slow

LIFETIME_S = 6


def expiry_bot(config: BotConfig, hs: Homeserver) -> BotRunner:
    """A BotRunner whose handler is the commands' dispatcher plus the expiry engine."""

    async def build(actions: NioActions, stack: AsyncExitStack) -> MessageHandler:
        cfg = runner.config
        url = cfg.effective_database_url
        store = await BotStore.open(url)
        stack.push_async_callback(store.close)
        schedule = await ExpiryStore.open(url)
        stack.push_async_callback(schedule.close)
        admin = SynapseExpiryAdmin(hs.client_url, hs.admin_token)
        stack.push_async_callback(admin.close)
        assert runner.client is not None
        engine = ExpiryEngine(
            schedule=schedule,
            cases=store,
            matrix=NioExpiryMatrix(runner.client),
            server_name=hs.server_name,
            admin=admin,
            settings=ExpirySettings(idle_poll_s=1.0),
        )
        await engine.start()
        task = asyncio.create_task(engine.run())

        async def stop_engine() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        stack.push_async_callback(stop_engine)
        runner.add_listener(ExpiryListener(engine))
        registry = default_registry()
        registry.add(expire_command(engine))
        dispatcher = CommandDispatcher(
            actions=actions,
            store=store,
            directory=UnavailableDirectory(),
            settings=CommandSettings(
                default_ttl_seconds=cfg.default_ttl,
                min_ttl_seconds=cfg.min_ttl,
                max_ttl_seconds=cfg.max_ttl,
                member_servers=cfg.effective_member_servers,
            ),
            registry=registry,
            lifecycle=ExpiryLifecycle(engine, redact_timeout_s=30),
        )
        return dispatcher.handle

    runner = BotRunner(config, build)
    return runner


@pytest_asyncio.fixture
async def bot(hs_a: Homeserver, hs_b: Homeserver, tmp_path: Path) -> AsyncIterator[BotRunner]:
    config = await bot_config(
        hs_a,
        tmp_path / "bot",
        [hs_a.server_name, hs_b.server_name],
        min_ttl="2s",
        default_ttl="1h",
        max_ttl="1d",
    )
    runner = expiry_bot(config, hs_a)
    await runner.start()
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
    async with aiohttp.ClientSession() as http:
        witnesses = [_witness(alice, hs_a, http), _witness(bob, hs_b, http)]
        try:
            dm = await alice.dm(bot.user_id)
            await alice.send(dm, f"!case new expiry-e2e {bob.user_id} ttl={LIFETIME_S}s")
            reply = await alice.wait_for_text(bot.user_id, lambda b: "matrix.to" in b)
            match = re.search(r"matrix\.to/#/(![^?\s)]+)", reply.body)
            assert match, reply.body
            room = unquote(match.group(1))
            for doctor in (alice, bob):
                await eventually(lambda d=doctor: _join(d, room))
                await doctor.wait_joined(room, doctor.user_id)
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

            kept = await bob.send(room, "message sous 1h de durée de vie")
            mark = len(alice.seen)
            await alice.send(room, "!case close")
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


async def _join(doctor: Doctor, room: str) -> bool | None:
    from nio import JoinResponse

    response = await doctor.client.join(room)
    return True if isinstance(response, JoinResponse) else None
