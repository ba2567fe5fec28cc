"""``!case new`` invites within the room's creation, and still reports each refusal.

The invitees are named in the /createRoom request, which is the quick way, but Synapse fails
that whole request on the first refused invitation, after the room exists. Whatever the
refusal, the requester gets one room, everyone who can be invited is, nobody twice, and the
reply says who was not and why: in memory for every kind of refusal, then against real
homeservers where a colleague's server refuses the bot's.
"""

# The dispatcher tests' ``bot`` fixture is imported, and test arguments shadow it by design.

from __future__ import annotations

import re
import secrets
from pathlib import Path
from urllib.parse import unquote

import aiohttp
import pytest

from bot.cases.journal import CaseJournal
from bot.cases.resume import REQUEST_MARK
from deploy.local.federation import Homeserver
from tests.conftest_bot import bot_config, start_bot
from tests.matrix_helpers import Doctor, unique
from tests.test_bot_commands_dispatch import ALICE, BOB, CAROL, Bot
from tests.test_bot_commands_dispatch import bot as bot  # the fixture (explicit re-export)


def _invitations(bot: Bot) -> list[str]:
    return [c[2] for c in bot.matrix.calls if c[0] == "invite"]


async def test_a_refused_invitation_in_the_creation_still_invites_everyone_else_once(
    bot: Bot,
) -> None:
    """Carol is invited by the creation, Bob's refusal fails it: the same room is kept,
    Carol is not invited again, the requester is, and Bob's refusal is reported."""
    bot.matrix.refuse_invites[str(BOB)] = "server unreachable"
    msg = bot.message(f"!case new genou-72 {CAROL} {BOB}")
    await bot.dispatcher.handle(msg)
    (room_id,) = [r for r in bot.matrix.rooms if r != bot.dm]
    assert bot.matrix.rooms[room_id].invited == {ALICE, CAROL}
    assert sorted(_invitations(bot)) == sorted([CAROL, BOB, BOB, ALICE])  # Bob tried twice
    (reply,) = bot.matrix.notices_in(bot.dm)
    assert f"Invited: {CAROL}" in reply
    assert f"Not invited: {BOB} — server unreachable" in reply
    assert "I could not invite you" not in reply
    request = await CaseJournal(bot.store.database).begin_request(msg.event_id, ALICE)
    assert request.room_id == room_id
    assert await bot.store.get_case(room_id) is not None


async def test_a_creation_refused_before_the_room_exists_invites_one_by_one(bot: Bot) -> None:
    """A refusal of the request as a whole (the guard judging the invitees before
    creating anything): the room is created without them, then each one invited."""
    bot.matrix.refuse_creation_with_invites = ("invitation refused by the guard", True)
    (reply,) = await bot.say(f"!case new genou-72 {CAROL} {BOB}")
    (room_id,) = [r for r in bot.matrix.rooms if r != bot.dm]
    assert bot.matrix.rooms[room_id].body["invite"] == []
    assert bot.matrix.rooms[room_id].invited == {ALICE, CAROL, BOB}
    assert sorted(_invitations(bot)) == sorted([ALICE, CAROL, BOB])
    assert f"Invited: {CAROL}, {BOB}" in reply and "Not invited" not in reply


async def test_a_server_error_without_a_room_creates_no_second_room(bot: Bot) -> None:
    """After a 5xx the room may still be in the making: rather than risk two rooms, the
    requester is told the creation failed and nothing else is created."""
    bot.matrix.refuse_creation_with_invites = ("502: Bad Gateway", False)
    (reply,) = await bot.say(f"!case new genou-72 {CAROL}")
    assert "The Matrix server refused the operation: 502: Bad Gateway" in reply
    assert list(bot.matrix.rooms) == [bot.dm]
    assert [c for c in bot.matrix.calls if c[0].startswith("create_room")] == [
        ("create_room refused",)
    ]


@pytest.mark.slow
async def test_a_colleague_server_refusing_the_invitation_is_reported_on_real_synapse(
    hs_a: Homeserver, hs_b: Homeserver, hs_c: Homeserver, tmp_path: Path
) -> None:
    """hs_c's bot counts hs_b as a member, but hs_b does not federate with hs_c: Synapse
    creates the room, then fails the request on hs_b's refusal. The requester still gets
    that one room, with the colleague of hs_c and themself invited, and hs_b's refusal
    named in the reply."""
    config = await bot_config(
        hs_c, tmp_path / "bot", [hs_c.server_name, hs_a.server_name, hs_b.server_name]
    )
    runner = await start_bot(config)
    requester = await Doctor.create(hs_c, tmp_path, name="req")
    refusing = await hs_b.register_user(unique("ub"), secrets.token_urlsafe(12))
    colleague = await hs_c.register_user(unique("uc"), secrets.token_urlsafe(12))
    try:
        dm = await requester.dm(runner.user_id)
        mark = len(requester.seen)
        await requester.send(dm, f"!case new genou-72 {refusing.user_id} {colleague.user_id}")
        reply = await requester.wait_for_text(
            runner.user_id, lambda b: "matrix.to" in b, after=mark, timeout=60
        )
        match = re.search(r"matrix\.to/#/(![^?\s)]+)", reply.body)
        assert match, reply.body
        room_id = unquote(match.group(1))
        assert f"Invited: {colleague.user_id}" in reply.body
        assert f"Not invited: {refusing.user_id} — could not invite" in reply.body
        assert "I could not invite you" not in reply.body

        headers = {"Authorization": f"Bearer {hs_c.admin_token}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            url = f"{hs_c.client_url}/_synapse/admin/v1/rooms/{room_id}/members"
            async with http.get(url) as response:
                assert response.status == 200
                members = set((await response.json())["members"])
            state_url = f"{hs_c.client_url}/_synapse/admin/v1/rooms/{room_id}/state"
            async with http.get(state_url) as response:
                state = (await response.json())["state"]
            marked = 0
            url = f"{hs_c.client_url}/_synapse/admin/v1/users/{runner.user_id}/joined_rooms"
            async with http.get(url) as response:
                rooms = (await response.json())["joined_rooms"]
            for room in rooms:
                async with http.get(
                    f"{hs_c.client_url}/_synapse/admin/v1/rooms/{room}/state"
                ) as response:
                    for event in (await response.json())["state"]:
                        if event["type"] == "m.room.create":
                            marked += REQUEST_MARK in event["content"]
        assert marked == 1  # one case room, never two
        invited = {
            e["state_key"]
            for e in state
            if e["type"] == "m.room.member" and e["content"]["membership"] == "invite"
        }
        assert invited == {requester.user_id, colleague.user_id}
        assert members == {runner.user_id}  # joined: the bot only, so far
    finally:
        await requester.close()
        await runner.stop()
