"""A member's device that could not get the bot's room key gets the next one.

nio claims a device's one-time key once, when a room key goes out. Here Bob, a member who
never wrote to the bot (so the bot has no Olm session with his device yet), has none left at
that moment (all claimed while he was offline), so he cannot read the bot's first answer in
the room; once his device has one-time keys again, the bot's next answer must be readable
(the bot claims again and starts a new room key)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nio import JoinResponse, MegolmEvent, RoomCreateResponse

from bot.runner import BotRunner
from deploy.local.federation import Homeserver
from tests.matrix_helpers import ENCRYPTION, Doctor, eventually

pytestmark = pytest.mark.slow


async def _claim_one(
    http: aiohttp.ClientSession, hs: Homeserver, token: str, user: str, device: str
) -> bool:
    """Take one of the device's one-time keys; False when it has none left."""
    body = {"one_time_keys": {user: {device: "signed_curve25519"}}}
    async with http.post(
        f"{hs.client_url}/_matrix/client/v3/keys/claim",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        assert response.status == 200, await response.text()
        data: dict[str, Any] = await response.json()
    return bool(data.get("one_time_keys", {}).get(user, {}).get(device))


async def test_a_member_without_one_time_keys_reads_the_bots_next_answer(
    bot_a: BotRunner, hs_a: Homeserver, tmp_path: Path
) -> None:
    alice = await Doctor.create(hs_a, tmp_path, name="alice")
    bob = await Doctor.create(hs_a, tmp_path, name="bob")  # never writes to the bot
    try:
        created = await alice.client.room_create(
            invite=[bot_a.user_id, bob.user_id], initial_state=[ENCRYPTION]
        )
        assert isinstance(created, RoomCreateResponse), created
        room_id = str(created.room_id)
        await eventually(lambda: _joined(bob, room_id))
        for member in (bot_a.user_id, bob.user_id):
            await alice.wait_joined(room_id, member)
            await alice.wait_devices_known(member)
        await alice.send(room_id, "bonjour")  # Alice's own keys reach everyone now

        await bob.pause_sync()  # offline: his client cannot upload new one-time keys
        device = str(bob.client.device_id)
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                if not await _claim_one(http, hs_a, hs_a.admin_token, bob.user_id, device):
                    break
            else:
                raise AssertionError("the device never ran out of one-time keys")

            await alice.send(room_id, "!help")
            await alice.wait_for_text(bot_a.user_id, lambda b: "!find" in b)
            olm = bob.client.olm
            assert olm is not None
            olm.uploaded_key_count = 0  # nio would not notice a count of 0 by itself
            await bob.client.keys_upload()  # back online with one-time keys
            bob.resume_sync()

            async def first_answer() -> Any:
                answers = [e for e in bob.seen if getattr(e, "sender", None) == bot_a.user_id]
                return answers[0] if answers else None

            answer = await eventually(first_answer, timeout=30)
            assert isinstance(answer, MegolmEvent), "Bob should have missed this room key"

            assert await _claim_one(http, hs_a, hs_a.admin_token, bob.user_id, device)

        mark = len(bob.seen)
        await alice.send(room_id, "!help")
        reply = await bob.wait_for_text(bot_a.user_id, lambda b: "!find" in b, after=mark)
        assert "!case" in reply.body
    finally:
        await alice.close()
        await bob.close()


async def _joined(doctor: Doctor, room_id: str) -> bool | None:
    return True if isinstance(await doctor.client.join(room_id), JoinResponse) else None


async def test_the_bot_uploads_one_time_keys_again_once_all_were_claimed(
    bot_a: BotRunner, hs_a: Homeserver, tmp_path: Path
) -> None:
    """Every one-time key of the bot claimed at once (many new devices): it must upload more,
    or no new device can start an encrypted session with it. nio alone never does (it
    ignores a count of 0)."""
    async with aiohttp.ClientSession() as http:
        token, user, device = hs_a.admin_token, bot_a.user_id, bot_a.device_id
        for _ in range(200):
            if not await _claim_one(http, hs_a, token, user, device):
                break
        else:
            raise AssertionError("the bot never ran out of one-time keys")

        doctor = await Doctor.create(hs_a, tmp_path)  # a newcomer: the bot syncs its invite
        try:
            room_id = await doctor.dm(bot_a.user_id)

            async def replenished() -> bool | None:
                return True if await _claim_one(http, hs_a, token, user, device) else None

            await eventually(replenished, timeout=60, every=0.5)
            await doctor.send(room_id, "!help")  # needs a one-time key of the bot
            reply = await doctor.wait_for_text(bot_a.user_id, lambda b: "!find" in b)
            assert "!case" in reply.body
        finally:
            await doctor.close()
