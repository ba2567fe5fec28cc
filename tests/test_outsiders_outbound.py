"""No path from a member homeserver to an outsider, whoever asks.

A member's user *and* server admin (server admins skip Synapse's spam checks) cannot make
their homeserver fetch an outsider's profile, devices, keys or media, join or knock on its
room (version-12 room ids name no server: only the link's `via` does), or deliver to-device
messages to it. hs_a has a static whitelist kept live by the guard, hs_b only the guard's.
Each test has a control showing that the same request reaches a member.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
import pytest
import pytest_asyncio

from deploy.local.federation import Homeserver
from tests.test_guard_synapse import Client, Reply, admin_on, user_on
from tests.test_outsiders_synapse import (
    Target,
    device_of,
    http,
    targets,
    upload_media,
    with_keys,
)

__all__ = ["http", "targets"]  # module-scoped fixtures shared with the inbound tests

pytestmark = pytest.mark.slow


@dataclass
class Outsider:
    carol: Client
    device_id: str
    media_id: str
    room_v12: str
    alias: str


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def outsider(hs_c: Homeserver, http: aiohttp.ClientSession) -> Outsider:
    carol = await user_on(hs_c, http, "carol")
    device = await device_of(carol)
    await with_keys(carol, device)
    displayname = {"displayname": "Dr Carole Secret"}
    assert (
        await carol.call("PUT", f"/profile/{quote(carol.user_id)}/displayname", displayname)
    ).status == 200
    # A room of version 12: its id names no server, only a link's `via` points at hs_c.
    room = await carol.new_room(preset="private_chat", room_version="12")
    assert ":" not in room
    alias = f"#case-{uuid.uuid4().hex[:8]}:{hs_c.server_name}"
    made = await carol.call("PUT", f"/directory/room/{quote(alias)}", {"room_id": room})
    assert made.status == 200, made.body
    return Outsider(carol, device, await upload_media(carol), room, alias)


@pytest.fixture(params=[("a", "user"), ("a", "admin"), ("b", "user"), ("b", "admin")], ids="-".join)
def who(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest_asyncio.fixture(loop_scope="session")
async def member(
    who: tuple[str, str], hs_a: Homeserver, hs_b: Homeserver, http: aiohttp.ClientSession
) -> Client:
    hs = hs_a if who[0] == "a" else hs_b
    return admin_on(hs, http) if who[1] == "admin" else await user_on(hs, http, "member")


async def test_no_one_on_a_member_reads_an_outsiders_profile(
    member: Client, outsider: Outsider
) -> None:
    reply = await member.call("GET", f"/profile/{quote(outsider.carol.user_id)}")
    assert reply.status != 200, reply.body
    assert "Carole" not in str(reply.body)


async def test_no_one_on_a_member_queries_or_claims_an_outsiders_keys(
    member: Client, outsider: Outsider, targets: dict[str, Target]
) -> None:
    carol = outsider.carol.user_id
    other = targets["b" if member.hs.name == "a" else "a"]  # the control: a member's keys
    query = {"device_keys": {carol: [], other.user.user_id: []}}
    reply = await member.call("POST", "/keys/query", query)
    assert reply.status == 200, reply.body
    assert not reply.body["device_keys"].get(carol), reply.body
    assert other.device_id in reply.body["device_keys"][other.user.user_id], "control"
    claim = {"one_time_keys": {carol: {outsider.device_id: "signed_curve25519"}}}
    reply = await member.call("POST", "/keys/claim", claim)
    assert carol not in reply.body.get("one_time_keys", {}), reply.body
    counts = await outsider.carol.call("POST", "/keys/upload", {})
    assert counts.body["one_time_key_counts"]["signed_curve25519"] == 3


async def test_no_one_on_a_member_joins_or_knocks_on_an_outsiders_room(
    member: Client, outsider: Outsider, hs_c: Homeserver
) -> None:
    room = outsider.room_v12
    via = f"?server_name={quote(hs_c.server_name)}&via={quote(hs_c.server_name)}"
    joined = await member.call("POST", f"/join/{quote(room)}{via}", {})
    # 502 "Failed to make_join via any server": hs_c was never asked (it would answer 403)
    assert joined.status == 502 and "via any server" in joined.body["error"], joined.body
    knocked = await member.call("POST", f"/knock/{quote(room)}{via}", {})
    assert knocked.status == 502 and "via any server" in knocked.body["error"], knocked.body
    assert room not in await member.joined_rooms()
    members = await outsider.carol.call("GET", f"/rooms/{quote(room)}/members")
    assert all(e["state_key"] == outsider.carol.user_id for e in members.body["chunk"])


async def test_no_one_on_a_member_resolves_or_joins_an_outsiders_alias(
    member: Client, outsider: Outsider
) -> None:
    alias = quote(outsider.alias)
    resolved = await member.call("GET", f"/directory/room/{alias}")
    assert resolved.status != 200 and outsider.room_v12 not in str(resolved.body), resolved.body
    joined = await member.call("POST", f"/join/{alias}", {})
    assert joined.status != 200, joined.body
    assert outsider.room_v12 not in await member.joined_rooms()


@pytest.mark.parametrize("member_hs", ["a", "b"])
async def test_a_server_admin_cannot_force_a_local_user_into_an_outsiders_room(
    member_hs: str,
    hs_a: Homeserver,
    hs_b: Homeserver,
    hs_c: Homeserver,
    outsider: Outsider,
    http: aiohttp.ClientSession,
) -> None:
    """The admin API's join (`/_synapse/admin/v1/join`) takes the same way out: refused."""
    hs = hs_a if member_hs == "a" else hs_b
    admin, doctor = admin_on(hs, http), await user_on(hs, http, "forced")
    url = (
        f"{hs.client_url}/_synapse/admin/v1/join/{quote(outsider.room_v12)}"
        f"?server_name={quote(hs_c.server_name)}"
    )
    headers = {"Authorization": f"Bearer {admin.token}"}
    async with http.post(url, json={"user_id": doctor.user_id}, headers=headers) as response:
        body = await response.json()
        assert response.status == 502 and "via any server" in body["error"], body
    assert outsider.room_v12 not in await doctor.joined_rooms()


async def test_no_one_on_a_member_fetches_an_outsiders_media(
    member: Client, outsider: Outsider, hs_c: Homeserver
) -> None:
    url = (
        f"{member.hs.client_url}/_matrix/client/v1/media/download/"
        f"{quote(hs_c.server_name)}/{outsider.media_id}"
    )
    headers = {"Authorization": f"Bearer {member.token}"}
    async with member.http.get(url, headers=headers) as response:
        assert response.status != 200
        assert b"encrypted attachment" not in await response.read()


async def test_to_device_messages_never_reach_an_outsider(
    member: Client, outsider: Outsider, targets: dict[str, Target]
) -> None:
    """One request to a member (the control) and to the outsider: only the member's arrives."""
    other = targets["b" if member.hs.name == "a" else "a"].user
    marker = uuid.uuid4().hex
    messages = {
        "messages": {
            other.user_id: {"*": {"marker": marker}},
            outsider.carol.user_id: {"*": {"marker": marker}},
        }
    }
    sent = await member.call("PUT", f"/sendToDevice/m.caducee.test/{marker}", messages)
    assert sent.status == 200, sent.body
    assert await to_device_arrives(other, marker), "control: the member's copy arrives"
    # Delivered together when allowed (~0.1 s apart); a bounded wait proves the absence.
    assert not await to_device_arrives(outsider.carol, marker, timeout_ms=2000)


async def to_device_arrives(client: Client, marker: str, timeout_ms: int = 10_000) -> bool:
    """Whether a to-device message with `marker` arrives (long-polling sync, no sleeps)."""
    since = ""
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        query = f"/sync?timeout={timeout_ms}" + (f"&since={since}" if since else "")
        reply: Reply = await client.call("GET", query)
        assert reply.status == 200, reply.body
        events = reply.body.get("to_device", {}).get("events", [])
        if any(e.get("content", {}).get("marker") == marker for e in events):
            return True
        since = reply.body["next_batch"]
        if time.monotonic() >= deadline:
            return False
