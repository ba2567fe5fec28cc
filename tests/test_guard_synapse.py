"""The guard inside real Synapse homeservers: what a client is refused, and why.

Raw client-server API calls (aiohttp): refusals need no encryption, and the allowed path
sends `m.room.encrypted` events with real Megolm ciphertext made by vodozemac (the guard
refuses anything else).
hs_b has no `federation_domain_whitelist` in its configuration, so what hs_b refuses from
or to hs_c is refused by the guard alone (its rules, and the federation whitelist it
installs and keeps live); hs_a has a static whitelist too.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import pytest_asyncio

from bridge.guard.identifiers import nir_key
from bridge.guard.module import RULE_FIELD
from bridge.guard.policy import MEGOLM
from deploy.local.federation import Homeserver
from tests.megolm_support import megolm_content

pytestmark = pytest.mark.slow

NIR = "1850578006084" + f"{nir_key('1850578006084'):02d}"
SPACED_NIR = f"{NIR[0]} {NIR[1:3]} {NIR[3:5]} {NIR[5:7]} {NIR[7:10]} {NIR[10:13]} {NIR[13:]}"
FAKE_MEGOLM = megolm_content()


@dataclass
class Reply:
    status: int
    body: dict[str, Any]

    @property
    def rule(self) -> str | None:
        value = self.body.get(RULE_FIELD)
        return value if isinstance(value, str) else None


@dataclass
class Client:
    """One signed-in account speaking the client-server API."""

    http: aiohttp.ClientSession
    hs: Homeserver
    user_id: str
    token: str

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Reply:
        url = f"{self.hs.client_url}/_matrix/client/v3{path}"
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.http.request(method, url, json=body, headers=headers) as response:
            return Reply(response.status, await response.json())

    async def create_room(self, **body: Any) -> Reply:
        return await self.call("POST", "/createRoom", body)

    async def new_room(self, **body: Any) -> str:
        reply = await self.create_room(**body)
        assert reply.status == 200, reply.body
        return str(reply.body["room_id"])

    async def send(self, room_id: str, event_type: str, content: dict[str, Any]) -> Reply:
        txn = uuid.uuid4().hex
        return await self.call("PUT", f"/rooms/{quote(room_id)}/send/{event_type}/{txn}", content)

    async def put_state(self, room_id: str, event_type: str, content: dict[str, Any]) -> Reply:
        return await self.call("PUT", f"/rooms/{quote(room_id)}/state/{event_type}/", content)

    async def state(self, room_id: str, event_type: str) -> Reply:
        return await self.call("GET", f"/rooms/{quote(room_id)}/state/{event_type}/")

    async def invite(self, room_id: str, user_id: str) -> Reply:
        return await self.call("POST", f"/rooms/{quote(room_id)}/invite", {"user_id": user_id})

    async def join(self, room_id: str, via: str) -> Reply:
        return await self.call("POST", f"/join/{quote(room_id)}?server_name={quote(via)}", {})

    async def joined_rooms(self) -> set[str]:
        reply = await self.call("GET", "/joined_rooms")
        return set(reply.body["joined_rooms"])


def refused(reply: Reply, rule: str, *words: str) -> None:
    """Assert a guard refusal as a client sees it: 403, M_FORBIDDEN, our reason."""
    assert reply.status == 403, reply.body
    assert reply.body["errcode"] == "M_FORBIDDEN", reply.body
    assert reply.rule == rule, reply.body
    for word in words:
        assert word in reply.body["error"], reply.body


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.2)


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def federation_denied(reply: Reply, origin: str) -> None:
    """Synapse's federation whitelist refused `origin` (kept by the guard), as relayed to a
    user of that server."""
    assert reply.status == 403, reply.body
    assert reply.body["errcode"] == "M_FORBIDDEN", reply.body
    assert f"Federation denied with {origin}" in reply.body["error"], reply.body


async def user_on(hs: Homeserver, http: aiohttp.ClientSession, name: str) -> Client:
    user = await hs.register_user(f"{name}-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex)
    return Client(http, hs, user.user_id, user.access_token)


def admin_on(hs: Homeserver, http: aiohttp.ClientSession) -> Client:
    assert hs.admin_token, "the fixture signs the server admin in"
    return Client(http, hs, hs.admin_user_id, hs.admin_token)


@pytest_asyncio.fixture(loop_scope="session", params=["user", "admin"])
async def actor(
    request: pytest.FixtureRequest, hs_a: Homeserver, http: aiohttp.ClientSession
) -> Client:
    """Each policy test runs for an ordinary user and for the server admin."""
    if request.param == "admin":
        return admin_on(hs_a, http)
    return await user_on(hs_a, http, "doctor")


# Two members


async def test_members_invite_join_and_exchange_encrypted_events(
    hs_a: Homeserver, hs_b: Homeserver, http: aiohttp.ClientSession
) -> None:
    alice, bob = await user_on(hs_a, http, "alice"), await user_on(hs_b, http, "bob")
    room = await alice.new_room(preset="private_chat", name="Cas 117")
    assert (await alice.invite(room, bob.user_id)).status == 200
    joined = await bob.join(room, hs_a.server_name)
    assert joined.status == 200, joined.body

    sent = await alice.send(room, "m.room.encrypted", FAKE_MEGOLM)
    assert sent.status == 200, sent.body
    assert (await bob.send(room, "m.room.encrypted", FAKE_MEGOLM)).status == 200

    async def bob_has_it() -> bool:
        reply = await bob.call("GET", f"/rooms/{quote(room)}/event/{quote(sent.body['event_id'])}")
        return reply.status == 200

    await eventually(bob_has_it)


async def test_a_room_is_encrypted_and_closed_to_guests_without_asking(actor: Client) -> None:
    room = await actor.new_room(preset="private_chat")
    assert (await actor.state(room, "m.room.encryption")).body == {"algorithm": MEGOLM}
    guests = await actor.state(room, "m.room.guest_access")
    assert guests.body == {"guest_access": "forbidden"}


# Refused for ordinary users and server admins alike


async def test_unencrypted_room_creation_is_refused(actor: Client) -> None:
    before = await actor.joined_rooms()
    none = {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "none"}}
    reply = await actor.create_room(preset="private_chat", initial_state=[none])
    refused(reply, "encryption_required", "end-to-end encrypted", "chiffrés")
    assert await actor.joined_rooms() == before  # no half-created room left behind


async def test_encryption_cannot_be_changed(actor: Client) -> None:
    room = await actor.new_room(preset="private_chat")
    reply = await actor.put_state(room, "m.room.encryption", {"algorithm": "m.olm.v1"})
    refused(reply, "encryption_required")


async def test_plaintext_message_in_an_encrypted_room_is_refused(actor: Client) -> None:
    room = await actor.new_room(preset="private_chat")
    reply = await actor.send(room, "m.room.message", {"msgtype": "m.text", "body": "Mme X"})
    refused(reply, "plaintext_forbidden", "encrypted")
    sent = await actor.send(room, "m.room.encrypted", FAKE_MEGOLM)
    assert sent.status == 200, sent.body
    relation = {"rel_type": "m.annotation", "event_id": sent.body["event_id"]}
    text = {"m.relates_to": {**relation, "key": "Mme X"}}
    refused(await actor.send(room, "m.reaction", text), "reaction_text_forbidden", "emoji")
    emoji = {"m.relates_to": {**relation, "key": "👍"}}
    assert (await actor.send(room, "m.reaction", emoji)).status == 200


async def test_public_rooms_are_refused(actor: Client) -> None:
    refused(await actor.create_room(preset="public_chat"), "join_rule_forbidden", "invite-only")
    refused(await actor.create_room(visibility="public"), "directory_forbidden")
    room = await actor.new_room(preset="private_chat")
    refused(
        await actor.put_state(room, "m.room.join_rules", {"join_rule": "public"}),
        "join_rule_forbidden",
    )
    refused(
        await actor.put_state(room, "m.room.join_rules", {"join_rule": "knock"}),
        "join_rule_forbidden",
    )
    guests = await actor.put_state(room, "m.room.guest_access", {"guest_access": "can_join"})
    refused(guests, "guest_access_forbidden")
    history = {"history_visibility": "world_readable"}
    refused(
        await actor.put_state(room, "m.room.history_visibility", history),
        "history_visibility_forbidden",
    )
    publish = await actor.call(
        "PUT", f"/directory/list/room/{quote(room)}", {"visibility": "public"}
    )
    assert publish.status == 403, publish.body


async def test_patient_identifier_in_room_name_is_refused(actor: Client) -> None:
    before = await actor.joined_rooms()
    reply = await actor.create_room(preset="private_chat", name=f"Mme X {SPACED_NIR}")
    refused(reply, "patient_identifier", "NIR", "pseudonym")
    assert NIR not in reply.body["error"] and SPACED_NIR not in reply.body["error"]
    assert await actor.joined_rooms() == before
    refused(await actor.create_room(topic=f"INS {NIR}"), "patient_identifier")
    room = await actor.new_room(preset="private_chat", name="Cas 118")
    refused(await actor.put_state(room, "m.room.name", {"name": NIR}), "patient_identifier")
    refused(
        await actor.put_state(room, "m.room.topic", {"topic": SPACED_NIR}), "patient_identifier"
    )
    assert (await actor.put_state(room, "m.room.name", {"name": "Cas 118 bis"})).status == 200


async def test_alias_with_a_patient_identifier_is_refused(actor: Client) -> None:
    room = await actor.new_room(preset="private_chat")
    alias = quote(f"#p{NIR}:{actor.hs.server_name}")
    refused(
        await actor.call("PUT", f"/directory/room/{alias}", {"room_id": room}), "patient_identifier"
    )
    ok_alias = quote(f"#case-{uuid.uuid4().hex[:6]}:{actor.hs.server_name}")
    assert (await actor.call("PUT", f"/directory/room/{ok_alias}", {"room_id": room})).status == 200


# An outsider (hs_c) is refused in both directions


@pytest.mark.parametrize("who", ["user", "admin"])
async def test_nobody_on_a_member_server_can_invite_an_outsider(
    who: str, hs_b: Homeserver, hs_c: Homeserver, http: aiohttp.ClientSession
) -> None:
    inviter = admin_on(hs_b, http) if who == "admin" else await user_on(hs_b, http, "inviter")
    carol = await user_on(hs_c, http, "carol")
    room = await inviter.new_room(preset="private_chat")
    refused(await inviter.invite(room, carol.user_id), "server_not_allowed", hs_c.server_name)
    refused(await inviter.create_room(invite=[carol.user_id]), "server_not_allowed")


async def test_invitations_from_an_outsider_are_refused_by_the_guard_alone(
    hs_b: Homeserver, hs_c: Homeserver, http: aiohttp.ClientSession
) -> None:
    carol, bob = await user_on(hs_c, http, "carol"), await user_on(hs_b, http, "bob")
    room = await carol.new_room(preset="private_chat")
    # hs_b's guard keeps Synapse's federation whitelist: the invitation is refused before any
    # handler runs, and hs_c relays the refusal to carol
    federation_denied(await carol.invite(room, bob.user_id), hs_c.server_name)
    sync = await bob.call("GET", "/sync?timeout=0")
    assert room not in sync.body.get("rooms", {}).get("invite", {})


async def test_invitations_from_an_outsider_are_refused_by_a_whitelisting_member_too(
    hs_a: Homeserver, hs_c: Homeserver, http: aiohttp.ClientSession
) -> None:
    carol, alice = await user_on(hs_c, http, "carol"), await user_on(hs_a, http, "alice")
    room = await carol.new_room(preset="private_chat")
    assert (await carol.invite(room, alice.user_id)).status == 403


@pytest.mark.parametrize("who", ["user", "admin"])
async def test_members_cannot_join_an_outsiders_room(
    who: str, hs_b: Homeserver, hs_c: Homeserver, http: aiohttp.ClientSession
) -> None:
    joiner = admin_on(hs_b, http) if who == "admin" else await user_on(hs_b, http, "joiner")
    carol = await user_on(hs_c, http, "carol")
    # room version 10: the room id names its server, so the guard can judge the join early
    room = await carol.new_room(preset="private_chat", room_version="10")
    reply = await joiner.join(room, hs_c.server_name)
    if who == "user":
        refused(reply, "server_not_allowed", hs_c.server_name)
    else:
        # Synapse gives admins' outgoing joins to no module hook: the federation whitelist
        # the guard keeps refuses to contact hs_c at all.
        assert reply.status == 502 and "via any server" in reply.body["error"], reply.body
    assert room not in await joiner.joined_rooms()


async def test_outsiders_cannot_join_or_write_in_a_members_room(
    hs_b: Homeserver, hs_c: Homeserver, http: aiohttp.ClientSession
) -> None:
    bob, carol = await user_on(hs_b, http, "bob"), await user_on(hs_c, http, "carol")
    room = await bob.new_room(preset="private_chat")
    # hs_b refuses hs_c's make_join at the federation whitelist; hs_c relays it to carol
    federation_denied(await carol.join(room, hs_b.server_name), hs_c.server_name)
    sent = await carol.send(room, "m.room.encrypted", FAKE_MEGOLM)
    assert sent.status == 403, sent.body  # not in the room, so nothing to send into
    members = await bob.call("GET", f"/rooms/{quote(room)}/joined_members")
    assert set(members.body["joined"]) == {bob.user_id}
