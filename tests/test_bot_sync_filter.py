"""The bot syncs like a bot: lazy-loaded members, a short timeline, no presence or typing.

- Every sync request of the running bot carries `SYNC_FILTER` (read off the wire).
- Lazy loading is really in effect (a member who joined before the bot and never spoke is not
  in the bot's view of the room), and that member still reads the bot's encrypted answer: the
  bot fetches the room's members before the room key goes out.
- Device-list changes are matched against the users the bot tracks, in O(changed users), and
  a cut (limited) timeline makes the bot fetch the room's members again before its next key.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

from nio import RoomCreateResponse, RoomPutStateResponse

from bot.runner import BotRunner
from bot.sync_filter import (
    SYNC_FILTER,
    TIMELINE_LIMIT,
    changed_tracked_users,
    forget_members_after_gaps,
)
from deploy.local.federation import Homeserver
from tests.matrix_helpers import ENCRYPTION, Doctor, eventually


def test_the_filter_drops_what_a_bot_does_not_read() -> None:
    room = SYNC_FILTER["room"]
    assert room["state"]["lazy_load_members"] is True
    assert room["timeline"]["lazy_load_members"] is True
    assert 1 <= room["timeline"]["limit"] == TIMELINE_LIMIT <= 20
    for unwanted in (SYNC_FILTER["presence"], room["ephemeral"], room["account_data"]):
        assert unwanted == {"not_types": ["*"]}
    # Keys travel as to-device messages: never filtered out.
    assert "to_device" not in SYNC_FILTER and "not_types" not in room["timeline"]


def test_device_changes_are_matched_against_tracked_users_only() -> None:
    tracked = {"@a:x", "@b:x"}
    stored = {"@c:x": {}}.keys()
    changed = changed_tracked_users(["@a:x", "@z:x"], ["@c:x", "@y:x"], tracked, stored)
    assert changed == {"@a:x", "@c:x"}
    assert changed_tracked_users([], [], tracked) == set()


def test_a_cut_timeline_makes_the_members_unknown_again() -> None:
    rooms = {r: SimpleNamespace(members_synced=True) for r in ("!cut:x", "!whole:x", "!other:x")}
    joined = {
        "!cut:x": SimpleNamespace(timeline=SimpleNamespace(limited=True)),
        "!whole:x": SimpleNamespace(timeline=SimpleNamespace(limited=False)),
        "!unknown:x": SimpleNamespace(timeline=SimpleNamespace(limited=True)),
    }
    assert forget_members_after_gaps(rooms, joined) == ["!cut:x"]
    assert [r.members_synced for r in rooms.values()] == [False, True, True]


async def test_a_silent_member_reads_the_bot_that_never_saw_them(
    bot_a: BotRunner, hs_a: Homeserver, tmp_path: Path
) -> None:
    client = bot_a.client
    assert client is not None
    filters: list[Any] = []
    real_send = client.send

    async def recording_send(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        if "/sync" in path:
            filters.extend(parse_qs(urlsplit(path).query).get("filter", [None]))
        return await real_send(method, path, *args, **kwargs)

    alice = await Doctor.create(hs_a, tmp_path, name="alice")
    bob = await Doctor.create(hs_a, tmp_path, name="bob")  # joins first, never writes
    client.send = recording_send
    try:
        # A named room, like a case room: no "heroes" whose members every sync would carry.
        created = await alice.client.room_create(
            name="Avis cardio", invite=[bob.user_id], initial_state=[ENCRYPTION]
        )
        assert isinstance(created, RoomCreateResponse), created
        room_id = str(created.room_id)
        await eventually(lambda: _joined(bob, room_id))
        await alice.wait_joined(room_id, bob.user_id)
        for n in range(TIMELINE_LIMIT + 1):  # push Bob's join out of the bot's first timeline
            put = await alice.client.room_put_state(room_id, "m.room.topic", {"topic": f"t{n}"})
            assert isinstance(put, RoomPutStateResponse), put
        await alice.client.room_invite(room_id, bot_a.user_id)
        await alice.wait_joined(room_id, bot_a.user_id)
        await eventually(lambda: _known(bot_a, room_id))
        assert bob.user_id not in client.rooms[room_id].users, "members are not lazy-loaded"

        await alice.wait_devices_known(bot_a.user_id)
        await alice.send(room_id, "!help")
        answer = await bob.wait_for_text(bot_a.user_id, lambda b: "!find" in b)
        assert "!case" in answer.body
        assert bob.user_id in client.rooms[room_id].users
    finally:
        client.send = real_send
        await alice.close()
        await bob.close()
    assert filters, "no sync request seen"
    assert all(f is not None and json.loads(f) == SYNC_FILTER for f in filters), filters


async def _joined(doctor: Doctor, room_id: str) -> bool | None:
    from nio import JoinResponse

    return True if isinstance(await doctor.client.join(room_id), JoinResponse) else None


async def _known(bot: BotRunner, room_id: str) -> bool | None:
    assert bot.client is not None
    return True if room_id in bot.client.rooms else None
