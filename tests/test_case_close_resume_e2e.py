"""Interrupted case commands, finished by the production bot restarted on real homeservers.

- ``!case new`` killed before it recorded the room it created: the restarted bot resumes
  into that room.
- ``!case close`` killed after it recorded the close but before the bot left: the restarted
  bot finishes it (the bot leaves, the room is purged), though the command itself does not
  come back (the restarted bot's sync shows only each room's last few events, and the close
  added more than that after the command)."""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import unquote

import aiohttp
import pytest
from nio import JoinedRoomsResponse

from bot.cases.journal import CaseJournal
from bot.cases.resume import REQUEST_MARK
from bot.config import BotConfig
from bot.matrix.actions import NioActions
from deploy.local.federation import Homeserver
from tests.conftest_bot import start_bot
from tests.matrix_helpers import ENCRYPTION, Doctor, eventually, open_case
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


async def test_a_case_new_killed_before_its_room_was_recorded_resumes_into_that_room(
    config: BotConfig,
    hs_a: Homeserver,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed between the homeserver creating the case room and the bot recording it: the
    restarted bot finds that room by the request's mark in its creation content, among the
    rooms it has no record of, and opens no second one. A room someone else created with the
    same mark (anyone who can invite the bot can write it) is not taken for it."""
    bot = await start_bot(config)
    alice = await Doctor.create(hs_a, tmp_path, name="alice")
    mallory = await Doctor.create(hs_a, tmp_path, name="mallory")
    try:
        dm = await alice.dm(bot.user_id)
        original = CaseJournal.set_request_room
        created = asyncio.Event()

        async def die_before_recording(self: CaseJournal, *args: Any) -> None:
            created.set()
            await asyncio.Event().wait()  # killed here: the room exists, unrecorded

        monkeypatch.setattr(CaseJournal, "set_request_room", die_before_recording)
        before = set(alice.client.invited_rooms)
        command = await alice.send(dm, "!case new reprise-creation")
        await asyncio.wait_for(created.wait(), 90)

        async def invited() -> str | None:
            return next(iter(set(alice.client.invited_rooms) - before), None)

        first = await eventually(invited, timeout=30)
        body = {
            "invite": [bot.user_id],
            "initial_state": [ENCRYPTION],
            "creation_content": {REQUEST_MARK: command},
        }
        headers = {"Authorization": f"Bearer {mallory.client.access_token}"}
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
            http.post(
                f"{hs_a.client_url}/_matrix/client/v3/createRoom", json=body, headers=headers
            ) as response,
        ):
            assert response.status == 200, await response.text()
            forged = str((await response.json())["room_id"])
        await mallory.wait_joined(forged, bot.user_id)
        await bot.stop()
        monkeypatch.setattr(CaseJournal, "set_request_room", original)

        mark = len(alice.seen)
        bot = await start_bot(config)  # the command comes back with the next sync
        reply = await alice.wait_for_text(
            bot.user_id, lambda b: "matrix.to" in b, after=mark, timeout=90
        )
        match = re.search(r"matrix\.to/#/(![^?\s)]+)", reply.body)
        assert match, reply.body
        assert unquote(match.group(1)) == first != forged
        assert set(alice.client.invited_rooms) - before == {first}  # no second room
    finally:
        await alice.close()
        await mallory.close()
        await bot.stop()
