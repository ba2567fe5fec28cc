"""``!case close`` killed after it recorded the close but before the bot left: the production
bot, restarted on real homeservers, finishes it (the bot leaves, the room is purged), though
the command itself does not come back (the restarted bot's sync shows only each room's last
few events, and the close added more than that after the command)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from nio import JoinedRoomsResponse

from bot.config import BotConfig
from bot.matrix.actions import NioActions
from deploy.local.federation import Homeserver
from tests.conftest_bot import start_bot
from tests.matrix_helpers import Doctor, eventually, open_case
from tests.test_case_export_delivery_e2e import config as config  # the fixture (re-export)

pytestmark = pytest.mark.slow


async def test_a_close_killed_before_the_bot_left_finishes_after_a_restart(
    config: BotConfig, hs_a: Homeserver, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = await start_bot(config)
    alice = await Doctor.create(hs_a, tmp_path, name="alice")
    try:
        case = await open_case(bot.user_id, alice, [], "clos-reprise ttl=1h")
        await alice.send(case.room, "dernier avis")
        original = NioActions.leave
        about_to_leave = asyncio.Event()

        async def die_before_leaving(self: NioActions, room_id: Any) -> None:
            about_to_leave.set()
            await asyncio.Event().wait()  # killed here: everyone removed, close recorded

        monkeypatch.setattr(NioActions, "leave", die_before_leaving)
        await alice.send(case.room, "!case close confirm")
        await asyncio.wait_for(about_to_leave.wait(), 120)
        await bot.stop()
        monkeypatch.setattr(NioActions, "leave", original)
        bot = await start_bot(config)  # the command comes back with the next sync
        headers = {"Authorization": f"Bearer {hs_a.admin_token}"}
        url = f"{hs_a.client_url}/_synapse/admin/v1/rooms/{case.room}"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:

            async def purged() -> bool | None:
                async with http.get(url, headers=headers) as response:
                    return True if response.status == 404 else None

            await eventually(purged, timeout=90)  # the bot left, then purged the room
        assert bot.client is not None
        rooms = await bot.client.joined_rooms()
        assert isinstance(rooms, JoinedRoomsResponse) and case.room not in rooms.rooms
    finally:
        await alice.close()
        await bot.stop()
