"""The bot against real homeservers: E2EE DMs across federation, cross-signing seen by others,
invite policy, restarts, redelivery, unreadable messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.crypto.bootstrap import query_keys
from bot.crypto.trust import Verdict, evaluate_user
from bot.ids import UserId
from bot.matrix.homeserver import NioJson
from bot.matrix.power_levels import CREATOR_POWER
from bot.runner import BotRunner
from deploy.local.federation import Homeserver
from tests.matrix_helpers import ENCRYPTION, Doctor

pytestmark = pytest.mark.slow


async def test_bot_device_is_cross_signed_as_seen_from_another_server(
    bot_a: BotRunner, hs_b: Homeserver, tmp_path: Path
) -> None:
    doctor = await Doctor.create(hs_b, tmp_path)
    try:
        answer = await query_keys(NioJson(doctor.client), [bot_a.user_id])
        trust = evaluate_user(bot_a.user_id, answer, None)
        assert bot_a.cross_signing is not None
        assert trust.master_public == bot_a.cross_signing.master_public
        assert trust.devices[bot_a.device_id] is Verdict.CROSS_SIGNED
    finally:
        await doctor.close()


async def test_doctors_on_both_servers_get_a_decrypted_help(
    bot_a: BotRunner, hs_a: Homeserver, hs_b: Homeserver, tmp_path: Path
) -> None:
    for hs in (hs_a, hs_b):
        doctor = await Doctor.create(hs, tmp_path, name=f"doc-{hs.name}")
        try:
            room_id = await doctor.dm(bot_a.user_id)
            await doctor.send(room_id, "!help")
            reply = await doctor.wait_for_text(bot_a.user_id, lambda b: "!find" in b)
            assert "!case" in reply.body
        finally:
            await doctor.close()


async def test_actions_report_creator_power_and_pending_invitations(
    bot_a: BotRunner, hs_b: Homeserver, tmp_path: Path
) -> None:
    """Room version 12 gives creators unlimited power without listing them in the power
    levels; `!case close` needs both that and the list of pending invitations."""
    doctor = await Doctor.create(hs_b, tmp_path)
    try:
        actions = bot_a.actions
        assert actions is not None
        body = {"room_version": "12", "preset": "private_chat", "initial_state": [ENCRYPTION]}
        room_id = await actions.create_room(body)
        assert await actions.power_level(room_id, actions.user_id) == CREATOR_POWER
        assert await actions.power_level(room_id, UserId(doctor.user_id)) == 0
        await actions.invite(room_id, UserId(doctor.user_id))
        assert await actions.invited_members(room_id) == [doctor.user_id]
        await actions.send_notice(room_id, "bonjour")  # encrypted for an invited member
        await actions.kick(room_id, UserId(doctor.user_id), "test")
        assert await actions.invited_members(room_id) == []
    finally:
        await doctor.close()
