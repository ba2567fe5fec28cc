"""No path to or from outsiders, tried against real Synapse as an attacker would.

hs_c is the outsider: the members trust its TLS certificate, it holds a valid signing key,
and its own users and admin try everything. hs_a has a static `federation_domain_whitelist`
that the guard keeps live; hs_b has none, so what hs_b refuses it refuses by its guard alone
(the guard installs Synapse's whitelist and keeps it equal to its allow-list).

- Inbound: every channel of the server-server API, signed with hs_c's own key, gets Synapse's
  "Federation denied" before any handler runs; the same request from a member gets through
  (so the request itself is sound), and a request claiming a member's name with hs_c's key
  fails its signature check.
- Outbound (`tests/test_outsiders_outbound.py`): nobody on a member reaches hs_c.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import pytest_asyncio

from deploy.local.federation import Homeserver
from tests.federation_signing import FederationReply, SignedFederationClient
from tests.test_guard_synapse import FAKE_MEGOLM, Client, user_on

pytestmark = pytest.mark.slow


@dataclass
class Target:
    """What an attacker would aim at on one homeserver: a user with keys, a room, media."""

    hs: Homeserver
    user: Client
    device_id: str
    room_id: str
    event_id: str
    media_id: str


async def with_keys(client: Client, device_id: str) -> None:
    """Upload device keys and one-time keys (made up: the server does not check them)."""
    user = client.user_id
    body = {
        "device_keys": {
            "user_id": user,
            "device_id": device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {f"curve25519:{device_id}": "c" * 43, f"ed25519:{device_id}": "e" * 43},
            "signatures": {user: {f"ed25519:{device_id}": "s" * 86}},
        },
        "one_time_keys": {
            f"signed_curve25519:AAAA{i}": {
                "key": f"{i}" * 43,
                "signatures": {user: {f"ed25519:{device_id}": "s" * 86}},
            }
            for i in range(3)
        },
    }
    reply = await client.call("POST", "/keys/upload", body)
    assert reply.status == 200, reply.body


async def device_of(client: Client) -> str:
    reply = await client.call("GET", "/devices")
    return str(reply.body["devices"][0]["device_id"])


async def upload_media(client: Client) -> str:
    url = f"{client.hs.client_url}/_matrix/media/v3/upload"
    headers = {
        "Authorization": f"Bearer {client.token}",
        "Content-Type": "application/octet-stream",
    }
    async with client.http.post(url, data=os.urandom(256), headers=headers) as response:
        assert response.status == 200
        uri = str((await response.json())["content_uri"])
    return uri.rsplit("/", 1)[1]


async def target_on(hs: Homeserver, http: aiohttp.ClientSession) -> Target:
    user = await user_on(hs, http, "doctor")
    device = await device_of(user)
    await with_keys(user, device)
    room = await user.new_room(preset="private_chat", room_version="10")
    sent = await user.send(room, "m.room.encrypted", FAKE_MEGOLM)
    assert sent.status == 200, sent.body
    return Target(hs, user, device, room, str(sent.body["event_id"]), await upload_media(user))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def targets(
    hs_a: Homeserver, hs_b: Homeserver, http: aiohttp.ClientSession
) -> dict[str, Target]:
    return {"a": await target_on(hs_a, http), "b": await target_on(hs_b, http)}


# Inbound: each channel of the server-server API, as the outsider server itself.

Channel = Callable[[Target, str], tuple[str, str, Any]]
"""(target, origin server name) -> (method, uri, body)."""

V1 = "/_matrix/federation/v1"


def _q(value: str) -> str:
    return quote(value, safe="")


def _transaction(t: Target, origin: str, edu_type: str, content: dict[str, Any]) -> Any:
    edu = {"edu_type": edu_type, "content": content}
    body = {
        "origin": origin,
        "origin_server_ts": int(time.time() * 1000),
        "pdus": [],
        "edus": [edu],
    }
    return ("PUT", f"{V1}/send/{uuid.uuid4().hex}", body)


CHANNELS: dict[str, Channel] = {
    "profile": lambda t, o: (
        "GET",
        f"{V1}/query/profile?user_id={_q(t.user.user_id)}&field=displayname",
        None,
    ),
    "directory": lambda t, o: (
        "GET",
        f"{V1}/query/directory?room_alias={_q('#case:' + t.hs.server_name)}",
        None,
    ),
    "device-list": lambda t, o: ("GET", f"{V1}/user/devices/{_q(t.user.user_id)}", None),
    "keys-query": lambda t, o: (
        "POST",
        f"{V1}/user/keys/query",
        {"device_keys": {t.user.user_id: []}},
    ),
    "keys-claim": lambda t, o: (
        "POST",
        f"{V1}/user/keys/claim",
        {"one_time_keys": {t.user.user_id: {t.device_id: "signed_curve25519"}}},
    ),
    "to-device": lambda t, o: _transaction(
        t,
        o,
        "m.direct_to_device",
        {
            "sender": f"@mallory:{o}",
            "type": "m.room_key_request",
            "message_id": uuid.uuid4().hex,
            "messages": {t.user.user_id: {"*": {"action": "request"}}},
        },
    ),
    "typing": lambda t, o: _transaction(
        t, o, "m.typing", {"room_id": t.room_id, "user_id": f"@mallory:{o}", "typing": True}
    ),
    "invite": lambda t, o: (
        "PUT",
        f"/_matrix/federation/v2/invite/{_q(t.room_id)}/{_q('$' + uuid.uuid4().hex)}",
        {"event": {}, "room_version": "10", "invite_room_state": []},
    ),
    "make-join": lambda t, o: (
        "GET",
        f"{V1}/make_join/{_q(t.room_id)}/{_q('@mallory:' + o)}?ver=10&ver=12",
        None,
    ),
    "send-join": lambda t, o: (
        "PUT",
        f"/_matrix/federation/v2/send_join/{_q(t.room_id)}/{_q('$' + uuid.uuid4().hex)}",
        {},
    ),
    "make-knock": lambda t, o: (
        "GET",
        f"{V1}/make_knock/{_q(t.room_id)}/{_q('@mallory:' + o)}?ver=10&ver=12",
        None,
    ),
    "event": lambda t, o: ("GET", f"{V1}/event/{_q(t.event_id)}", None),
    "backfill": lambda t, o: (
        "GET",
        f"{V1}/backfill/{_q(t.room_id)}?v={_q(t.event_id)}&limit=10",
        None,
    ),
    "state": lambda t, o: ("GET", f"{V1}/state/{_q(t.room_id)}?event_id={_q(t.event_id)}", None),
    "state-ids": lambda t, o: (
        "GET",
        f"{V1}/state_ids/{_q(t.room_id)}?event_id={_q(t.event_id)}",
        None,
    ),
    "missing-events": lambda t, o: (
        "POST",
        f"{V1}/get_missing_events/{_q(t.room_id)}",
        {"earliest_events": [], "latest_events": [t.event_id], "limit": 10},
    ),
    "event-auth": lambda t, o: ("GET", f"{V1}/event_auth/{_q(t.room_id)}/{_q(t.event_id)}", None),
    "hierarchy": lambda t, o: ("GET", f"{V1}/hierarchy/{_q(t.room_id)}", None),
    "public-rooms": lambda t, o: ("GET", f"{V1}/publicRooms", None),
    "media": lambda t, o: ("GET", f"{V1}/media/download/{_q(t.media_id)}", None),
    "media-thumbnail": lambda t, o: (
        "GET",
        f"{V1}/media/thumbnail/{_q(t.media_id)}?width=32&height=32&method=scale",
        None,
    ),
}


def denied(reply: FederationReply, origin: str) -> None:
    """Synapse's whitelist refusal, before any handler: 403, M_FORBIDDEN, "Federation denied"."""
    assert reply.status == 403, reply.body
    assert reply.body.get("errcode") == "M_FORBIDDEN", reply.body
    assert f"Federation denied with {origin}" in str(reply.body.get("error")), reply.body


@pytest.mark.parametrize("member", ["a", "b"])
@pytest.mark.parametrize("channel", sorted(CHANNELS))
async def test_an_outsider_server_gets_nothing_on_any_channel(
    member: str,
    channel: str,
    targets: dict[str, Target],
    hs_c: Homeserver,
    http: aiohttp.ClientSession,
) -> None:
    target = targets[member]
    outsider = SignedFederationClient.of(hs_c)
    method, uri, body = CHANNELS[channel](target, hs_c.server_name)
    denied(await outsider.request(http, method, target.hs, uri, body), hs_c.server_name)


@pytest.mark.parametrize("member", ["a", "b"])
async def test_the_same_signed_requests_from_a_member_get_through(
    member: str,
    targets: dict[str, Target],
    hs_a: Homeserver,
    hs_b: Homeserver,
    http: aiohttp.ClientSession,
) -> None:
    """The control: the requests above are sound; only the origin makes them fail."""
    target = targets[member]
    peer = SignedFederationClient.of(hs_b if member == "a" else hs_a)
    method, uri, body = CHANNELS["device-list"](target, peer.origin)
    reply = await peer.request(http, method, target.hs, uri, body)
    assert reply.status == 200, reply.body
    assert [d["device_id"] for d in reply.body["devices"]] == [target.device_id]
    method, uri, body = CHANNELS["keys-query"](target, peer.origin)
    reply = await peer.request(http, method, target.hs, uri, body)
    assert reply.status == 200, reply.body
    assert target.device_id in reply.body["device_keys"][target.user.user_id]


async def test_an_outsider_cannot_borrow_a_members_name(
    targets: dict[str, Target], hs_a: Homeserver, hs_c: Homeserver, http: aiohttp.ClientSession
) -> None:
    """Claiming hs_a's name with hs_c's key fails Synapse's signature check on hs_b."""
    target = targets["b"]
    impostor = SignedFederationClient.of(hs_c, claimed_origin=hs_a.server_name)
    method, uri, body = CHANNELS["device-list"](target, hs_a.server_name)
    reply = await impostor.request(http, method, target.hs, uri, body)
    assert reply.status == 401, reply.body
    assert "devices" not in reply.body


async def test_an_outsiders_claims_leave_one_time_keys_untouched(
    targets: dict[str, Target], hs_c: Homeserver, http: aiohttp.ClientSession
) -> None:
    carol = await user_on(hs_c, http, "carol")
    for target in targets.values():
        claim = {"one_time_keys": {target.user.user_id: {target.device_id: "signed_curve25519"}}}
        reply = await carol.call("POST", "/keys/claim", claim)
        assert target.user.user_id not in reply.body.get("one_time_keys", {}), reply.body
        counts = await target.user.call("POST", "/keys/upload", {})
        assert counts.body["one_time_key_counts"]["signed_curve25519"] == 3


@pytest.mark.parametrize("member", ["a", "b"])
@pytest.mark.parametrize("version", ["v3", "r0", "v1"])
async def test_media_is_not_served_anonymously_on_the_federation_port(
    member: str, version: str, targets: dict[str, Target], http: aiohttp.ClientSession
) -> None:
    """Synapse mounts the legacy, unauthenticated media API on the federation listener too;
    with authenticated media (Synapse's default, kept) it serves nothing there."""
    target = targets[member]
    outsider = SignedFederationClient.of(target.hs)  # only for its TLS trust; sends no header
    url = f"https://{target.hs.server_name}/_matrix/media/{version}/download/"
    url += f"{target.hs.server_name}/{target.media_id}"
    async with http.get(url, ssl=outsider.ssl) as response:
        assert response.status == 404, await response.text()
        assert b"encrypted attachment" not in await response.read()
