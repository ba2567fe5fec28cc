"""What the bot relies on in matrix-nio's crypto state, pinned against the installed nio.

These names look public but nio documents none of them; the bot reads and writes them
(`bot/matrix/client.py`, `bot/identity/notice.py`, `bot/sync_filter.py`,
`bot/matrix/nio_private.py`, `bot/matrix/actions.py`), so a nio upgrade that changes one
fails here, by name:

- `Olm.outbound_group_sessions`: a dict, room id to the room's `OutboundGroupSession`,
  filled when nio shares a room key.
- `OutboundGroupSession.users_shared_with` / `users_ignored`: sets of ``(user, device)``;
  sharing fills them, and the bot skips a device found in either.
- `OutboundGroupSession.shared`: set once every device of the room is in one of them; nio
  refuses to encrypt with a session not marked shared.
- `Olm.rotate_outbound_group_session`: the room's session replaced by a fresh, unshared one
  with empty sets, so the next message shares a new key with everyone.
- `Olm.session_store.get(curve25519)`: the Olm session with a device, or None.
- `Olm.create_group_session`: stores an inbound copy of a room key (the bot's own copy of a
  notice's key), and leaves the room's outbound session alone.
- `Olm.tracked_users`: a set, filled by a keys query answer.
- `MatrixRoom.members_synced`: False on a new room, True once nio applied the joined
  members, and while False nio's `room_send` fetches them before sharing a key.

No homeserver: nio objects are built locally; a loopback stand-in answers `room_send`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from nio import JoinedMembersResponse, KeysQueryResponse, ShareGroupSessionResponse
from nio.crypto import OlmDevice
from nio.crypto.sessions import OutboundGroupSession
from nio.exceptions import EncryptionError
from nio.rooms import MatrixRoom

from tests.test_bot_nio_private import BOT, DOCTOR, offline_client

ROOM = "!ward:clinic.test"


@pytest_asyncio.fixture
async def doctor(tmp_path: Path) -> AsyncIterator[Any]:
    client = offline_client(tmp_path / "doctor", DOCTOR, "DOCDEVICE")
    try:
        yield client
    finally:
        await client.close()


@pytest_asyncio.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Any]:
    client = offline_client(tmp_path / "bot", BOT, "BOTDEVICE")
    try:
        yield client
    finally:
        await client.close()


def encrypted_room(bot: Any, *members: str) -> MatrixRoom:
    room = MatrixRoom(ROOM, BOT)
    room.encrypted = True
    for user in members:
        room.add_member(user, None, None)
    room.members_synced = True
    bot.rooms[ROOM] = room
    return room


def know_doctor(bot: Any, doctor: Any) -> tuple[OlmDevice, OlmDevice]:
    """The doctor's device, with an Olm session to it, and an old device the bot blacklisted."""
    keys = dict(doctor.olm.account.identity_keys)
    device = OlmDevice(DOCTOR, "DOCDEVICE", keys)
    old = OlmDevice(DOCTOR, "OLDDEVICE", {"curve25519": "old-curve", "ed25519": "old-ed"})
    bot.device_store.add(device)
    bot.device_store.add(old)
    bot.olm.blacklist_device(old)
    doctor.olm.account.generate_one_time_keys(1)
    one_time_key = next(iter(doctor.olm.account.one_time_keys["curve25519"].values()))
    bot.olm.create_session(one_time_key, keys["curve25519"])
    return device, old


async def share(bot: Any) -> set[tuple[str, str]]:
    """nio's room key sharing, its to-device answer applied as `AsyncClient` does."""
    shared: set[tuple[str, str]] = set()
    for sharing_with, _ in bot.olm.share_group_session_parallel(
        ROOM, list(bot.rooms[ROOM].users), ignore_unverified_devices=True
    ):
        shared |= sharing_with
    await bot.receive_response(ShareGroupSessionResponse(ROOM, shared))
    return shared


async def test_session_store_gets_the_olm_session_by_curve25519_key(bot: Any, doctor: Any) -> None:
    device, old = know_doctor(bot, doctor)
    found = bot.olm.session_store.get(device.curve25519)
    assert found is not None and found.id
    assert bot.olm.session_store.get(old.curve25519) is None


async def test_sharing_fills_the_rooms_outbound_session_and_its_sets(bot: Any, doctor: Any) -> None:
    encrypted_room(bot, BOT, DOCTOR)
    assert bot.olm.outbound_group_sessions == {}
    assert bot.olm.should_share_group_session(ROOM)
    know_doctor(bot, doctor)
    assert await share(bot) == {(DOCTOR, "DOCDEVICE")}
    session = bot.olm.outbound_group_sessions[ROOM]
    assert isinstance(bot.olm.outbound_group_sessions, dict)
    assert type(session) is OutboundGroupSession
    assert session.users_shared_with == {(DOCTOR, "DOCDEVICE")}
    assert session.users_ignored == {(DOCTOR, "OLDDEVICE")}  # the blacklisted one
    assert session.shared is True  # every device of the room is in one set or the other
    assert not bot.olm.should_share_group_session(ROOM)


async def test_a_device_in_neither_set_leaves_the_session_unshared(bot: Any, doctor: Any) -> None:
    encrypted_room(bot, BOT, DOCTOR)
    know_doctor(bot, doctor)
    bot.olm.create_outbound_group_session(ROOM)
    await bot.receive_response(ShareGroupSessionResponse(ROOM, set()))  # the delivery failed
    session = bot.olm.outbound_group_sessions[ROOM]
    assert session.users_shared_with == set()
    assert session.shared is False


async def test_rotate_gives_the_room_a_fresh_unshared_session(bot: Any, doctor: Any) -> None:
    encrypted_room(bot, BOT, DOCTOR)
    know_doctor(bot, doctor)
    await share(bot)
    before = bot.olm.outbound_group_sessions[ROOM]
    assert before.shared and before.users_shared_with
    bot.olm.rotate_outbound_group_session(ROOM)
    after = bot.olm.outbound_group_sessions[ROOM]
    assert after is not before and after.id != before.id
    assert after.shared is False
    assert after.users_shared_with == set() and after.users_ignored == set()
    assert bot.olm.should_share_group_session(ROOM)  # nio shares it with everyone next


async def test_create_group_session_stores_our_inbound_copy_only(bot: Any) -> None:
    session = OutboundGroupSession()
    curve = bot.olm.account.identity_keys["curve25519"]
    ed = bot.olm.account.identity_keys["ed25519"]
    bot.olm.create_group_session(curve, ed, ROOM, session.id, session.session_key)
    inbound = bot.olm.inbound_group_store.get(ROOM, curve, session.id)
    assert inbound is not None
    assert bot.olm.outbound_group_sessions == {}  # the room's own key is untouched
    with pytest.raises(EncryptionError):
        session.encrypt("{}")  # nio's guard: not marked shared yet
    session.shared = True
    plaintext, _index = inbound.decrypt(session.encrypt('{"body": "x"}'))
    assert plaintext == '{"body": "x"}'


async def test_tracked_users_is_a_set_a_keys_query_answer_fills(bot: Any, doctor: Any) -> None:
    assert isinstance(bot.olm.tracked_users, set) and not bot.olm.tracked_users
    device_keys = doctor.olm.share_keys()["device_keys"]
    answer = KeysQueryResponse.from_dict(
        {"device_keys": {DOCTOR: {"DOCDEVICE": device_keys}}, "failures": {}}
    )
    assert isinstance(answer, KeysQueryResponse)
    await bot.receive_response(answer)
    assert bot.olm.tracked_users == {DOCTOR}
    assert "DOCDEVICE" in bot.device_store[DOCTOR]


async def test_members_synced_is_set_by_the_joined_members_answer(bot: Any) -> None:
    assert MatrixRoom(ROOM, BOT).members_synced is False
    room = encrypted_room(bot, BOT)
    room.members_synced = False
    answer = JoinedMembersResponse.from_dict({"joined": {BOT: {}, DOCTOR: {}}}, ROOM)
    assert isinstance(answer, JoinedMembersResponse)
    await bot.receive_response(answer)
    assert room.members_synced is True
    assert DOCTOR in room.users
    assert DOCTOR in bot.olm.users_for_key_query  # untracked members are queried next


class Homeserver:
    """Answers what nio's `room_send` asks, and records the paths."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def app(self) -> web.Application:
        async def joined(request: web.Request) -> web.Response:
            self.paths.append(request.path)
            return web.json_response({"joined": {BOT: {}}})

        async def keys_query(request: web.Request) -> web.Response:
            self.paths.append(request.path)
            return web.json_response({"device_keys": {BOT: {}}, "failures": {}})

        async def send(request: web.Request) -> web.Response:
            self.paths.append(request.path)
            return web.json_response({"event_id": "$sent"})

        app = web.Application()
        app.router.add_get("/_matrix/client/v3/rooms/{room}/joined_members", joined)
        app.router.add_post("/_matrix/client/v3/keys/query", keys_query)
        app.router.add_put("/_matrix/client/v3/rooms/{room}/send/{type}/{txn}", send)
        return app


async def test_room_send_fetches_the_members_while_they_are_not_synced(tmp_path: Path) -> None:
    homeserver = Homeserver()
    server = TestServer(homeserver.app())
    await server.start_server()
    bot = offline_client(tmp_path / "bot", BOT, "BOTDEVICE", str(server.make_url("")).rstrip("/"))
    try:
        room = encrypted_room(bot, BOT)
        room.members_synced = False
        await bot.room_send(ROOM, "m.room.message", {"msgtype": "m.notice", "body": "x"})
        assert room.members_synced is True
        assert homeserver.paths[0] == "/_matrix/client/v3/rooms/!ward:clinic.test/joined_members"
        assert homeserver.paths[-1].startswith(
            "/_matrix/client/v3/rooms/!ward:clinic.test/send/m.room.encrypted/"
        )
    finally:
        await bot.close()
        await server.close()
