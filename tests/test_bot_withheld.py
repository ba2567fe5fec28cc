"""Withheld-key notices on real homeservers: only the session's own sender can explain why the
bot could not read a message, and only with the codes the spec defines.

An ``m.room_key.withheld`` notice is a to-device message anyone can send to the bot's device,
naming any session. The bot's answer in the room must not be steerable by someone else (another
user, or another device claiming the doctor's session), and never echoes the sender's words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nio import ToDeviceMessage

from bot.runner import BotRunner
from deploy.local.federation import Homeserver
from tests.matrix_helpers import Doctor

pytestmark = pytest.mark.slow

BLOCKED = "has blocked my session"
NO_KEY = "never reached me"


async def _unreadable_session(doctor: Doctor, bot: BotRunner) -> tuple[str, str, str]:
    """A DM whose next message the bot cannot read: (room, session id, doctor's sender key).

    The doctor's client blacklists the bot's device, so the next room key skips it; the key's
    session is created up front, so its id can be named before the message goes out.
    """
    room_id = await doctor.dm(bot.user_id)
    await doctor.send(room_id, "!help")
    await doctor.wait_for_text(bot.user_id, lambda b: "!find" in b)
    client = doctor.client
    assert client.olm is not None
    client.blacklist_device(client.device_store[bot.user_id][bot.device_id])
    client.olm.create_outbound_group_session(room_id)
    session_id = client.olm.outbound_group_sessions[room_id].id
    return room_id, session_id, client.olm.account.identity_keys["curve25519"]


def _withheld(room_id: str, session_id: str, sender_key: str, code: str) -> dict[str, Any]:
    return {
        "algorithm": "m.megolm.v1.aes-sha2",
        "room_id": room_id,
        "session_id": session_id,
        "sender_key": sender_key,
        "code": code,
        "reason": "test",
    }


async def test_withheld_notices_from_others_do_not_explain_a_doctors_message(
    bot_a: BotRunner, hs_a: Homeserver, tmp_path: Path
) -> None:
    """Another user names the doctor's session (with the doctor's sender key, and with their
    own): the bot ignores both and, after its grace period, says the key never came."""
    doctor = await Doctor.create(hs_a, tmp_path, name="victim")
    mallory = await Doctor.create(hs_a, tmp_path, name="mallory")
    try:
        room_id, session_id, doctor_key = await _unreadable_session(doctor, bot_a)
        assert mallory.client.olm is not None
        mallory_key = mallory.client.olm.account.identity_keys["curve25519"]
        for key in (doctor_key, mallory_key):
            spoof = _withheld(room_id, session_id, key, "m.blacklisted")
            sent = await mallory.client.to_device(
                ToDeviceMessage("m.room_key.withheld", bot_a.user_id, bot_a.device_id, spoof)
            )
            assert getattr(sent, "transport_response", None) is not None, sent
        # The spoofs are stored on the bot's homeserver before the message is sent, so the
        # bot sees them no later than the message it cannot read.
        mark = len(doctor.seen)
        await doctor.send(room_id, "!help")
        assert doctor.client.olm.outbound_group_sessions[room_id].id == session_id  # type: ignore[union-attr]
        notice = await doctor.wait_for_text(bot_a.user_id, after=mark, timeout=60)
        assert NO_KEY in notice.body, notice.body
        assert BLOCKED not in notice.body
    finally:
        await doctor.close()
        await mallory.close()


async def test_the_doctors_own_withheld_code_outside_the_spec_is_not_echoed(
    bot_a: BotRunner, hs_a: Homeserver, tmp_path: Path
) -> None:
    """The session's owner may withhold the key, but a code of their invention (a link, a
    sentence) gets the generic text: the bot never repeats it into the room."""
    doctor = await Doctor.create(hs_a, tmp_path, name="owner")
    try:
        room_id, session_id, doctor_key = await _unreadable_session(doctor, bot_a)
        mark = len(doctor.seen)
        await doctor.send(room_id, "!help")
        code = "m.call https://phish.example/reset now"
        await doctor.client.to_device(
            ToDeviceMessage(
                "m.room_key.withheld",
                bot_a.user_id,
                bot_a.device_id,
                _withheld(room_id, session_id, doctor_key, code),
            )
        )
        notice = await doctor.wait_for_text(bot_a.user_id, after=mark, timeout=60)
        assert "did not give me its encryption key" in notice.body, notice.body
        assert "phish" not in notice.body and "m.call" not in notice.body
    finally:
        await doctor.close()
