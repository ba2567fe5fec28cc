"""No plaintext outside the encrypted channel, tried against real Synapse as an attacker.

Each rule is attacked as an ordinary user and as the server admin (who bypasses
Synapse's spam checks), and across servers: a member of hs_b writing into a room that
lives on hs_a. The refusal must be the guard's (403, M_FORBIDDEN, our rule id) and the
room must end up without the smuggled content on either server.
"""

from __future__ import annotations

import base64
import os
from urllib.parse import quote

import aiohttp
import pytest

from bridge.guard.ciphertext import unpadded_base64
from deploy.local.federation import Homeserver
from tests.megolm_support import megolm_content
from tests.test_guard_synapse import (
    NIR,
    SPACED_NIR,
    Client,
    actor,
    admin_on,
    eventually,
    http,
    refused,
    user_on,
)

pytestmark = pytest.mark.slow
__all__ = ["actor", "http"]

SECRET = {"body": "Mme X, 45 ans, VIH+"}


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


async def test_custom_room_state_is_refused(actor: Client) -> None:
    room = await actor.new_room(preset="private_chat")
    for event_type in (
        "org.example.note",
        "im.vector.modular.widgets",
        "m.room.aliases",
        "io.element.widgets.layout",
    ):
        refused(await actor.put_state(room, event_type, SECRET), "state_type_forbidden", "/")
        assert (await actor.state(room, event_type)).status == 404
    message = await actor.put_state(room, "m.room.message", {"msgtype": "m.text", **SECRET})
    refused(message, "state_type_forbidden")
    extra = await actor.put_state(room, "m.room.name", {"name": "Cas 9", **SECRET})
    refused(extra, "field_forbidden")
    assert (await actor.state(room, "m.room.name")).status == 404
    before = await actor.joined_rooms()
    initial = [{"type": "org.example.note", "state_key": "", "content": SECRET}]
    refused(
        await actor.create_room(preset="private_chat", initial_state=initial),
        "state_type_forbidden",
    )
    assert await actor.joined_rooms() == before


async def test_creation_content_and_power_levels_are_judged(actor: Client) -> None:
    before = await actor.joined_rooms()
    for body, rule in [
        ({"creation_content": {"x.note": SECRET["body"]}}, "field_forbidden"),
        ({"creation_content": {"type": f"cas {SPACED_NIR}"}}, "patient_identifier"),
        ({"power_level_content_override": {"users": {f"@{NIR}:x": 1}}}, "patient_identifier"),
    ]:
        refused(await actor.create_room(preset="private_chat", **body), rule)
    assert await actor.joined_rooms() == before


async def test_membership_text_is_scanned(
    actor: Client, hs_b: Homeserver, http: aiohttp.ClientSession
) -> None:
    bob = await user_on(hs_b, http, "bob")
    room = await actor.new_room(preset="private_chat")
    invite = await actor.call(
        "POST", f"/rooms/{quote(room)}/invite", {"user_id": bob.user_id, "reason": SPACED_NIR}
    )
    refused(invite, "patient_identifier", "pseudonym")
    assert NIR not in invite.body["error"]
    member = f"/rooms/{quote(room)}/state/m.room.member/{quote(actor.user_id)}"
    named = await actor.call("PUT", member, {"membership": "join", "displayname": f"Dr X {NIR}"})
    refused(named, "patient_identifier")
    refused(
        await actor.call("POST", f"/rooms/{quote(room)}/leave", {"reason": NIR}),
        "patient_identifier",
    )
    # A display name changed in the profile is not copied into the room
    profile = f"/profile/{quote(actor.user_id)}/displayname"
    await actor.call("PUT", profile, {"displayname": SPACED_NIR})
    try:
        now = await actor.call("GET", member)
        assert now.status == 200 and SPACED_NIR not in str(now.body), now.body
    finally:
        await actor.call("PUT", profile, {"displayname": "Dr X"})


def _forged_megolm(ciphertext: bytes) -> str:
    return b64(b"\x03\x08\x00\x12" + bytes([len(ciphertext)]) + ciphertext + os.urandom(72))


async def test_fake_ciphertext_is_refused(actor: Client) -> None:
    room = await actor.new_room(preset="private_chat")
    real = megolm_content()
    raw = unpadded_base64(real["ciphertext"])
    assert raw is not None
    for fake in (
        SECRET["body"],
        b64(SECRET["body"].encode()),
        b64(b"\x04" + raw[1:]),  # right length, wrong version byte
        b64(os.urandom(len(raw))),
        _forged_megolm(b"Mme X, 45 ans, VIH+ bilan 03/12"),
    ):
        refused(
            await actor.send(room, "m.room.encrypted", {**real, "ciphertext": fake}),
            "ciphertext_malformed",
        )
    refused(await actor.send(room, "m.room.encrypted", {**real, **SECRET}), "field_forbidden")
    refused(
        await actor.send(room, "m.room.encrypted", {**real, "algorithm": "x"}),
        "encryption_required",
    )
    assert (await actor.send(room, "m.room.encrypted", real)).status == 200


async def test_redactions_carry_no_text(actor: Client) -> None:
    room = await actor.new_room(preset="private_chat")
    sent = await actor.send(room, "m.room.encrypted", megolm_content())
    path = f"/rooms/{quote(room)}/redact/{quote(sent.body['event_id'])}/"
    refused(await actor.call("PUT", path + "1", {"reason": SPACED_NIR}), "patient_identifier")
    refused(await actor.call("PUT", path + "2", {"reason": "doublon", **SECRET}), "field_forbidden")
    assert (await actor.call("PUT", path + "3", {"reason": "doublon"})).status == 200


@pytest.mark.parametrize("who", ["user", "admin"])
async def test_a_member_of_another_server_is_held_to_the_same_rules(
    who: str, hs_a: Homeserver, hs_b: Homeserver, http: aiohttp.ClientSession
) -> None:
    """From hs_b into a room on hs_a, as a user of hs_b and as hs_b's admin."""
    alice = await user_on(hs_a, http, "alice")
    writer = admin_on(hs_b, http) if who == "admin" else await user_on(hs_b, http, "bob")
    room = await alice.new_room(preset="private_chat")
    assert (await alice.invite(room, writer.user_id)).status == 200
    assert (await writer.join(room, hs_a.server_name)).status == 200
    refused(await writer.put_state(room, "org.example.note", SECRET), "state_type_forbidden")
    fake = {**megolm_content(), "ciphertext": b64(SECRET["body"].encode())}
    refused(await writer.send(room, "m.room.encrypted", fake), "ciphertext_malformed")
    member = f"/rooms/{quote(room)}/state/m.room.member/{quote(writer.user_id)}"
    refused(
        await writer.call("PUT", member, {"membership": "join", "reason": NIR}),
        "patient_identifier",
    )
    sent = await writer.send(room, "m.room.encrypted", megolm_content())
    assert sent.status == 200, sent.body

    async def alice_has_it() -> bool:
        reply = await alice.call(
            "GET", f"/rooms/{quote(room)}/event/{quote(sent.body['event_id'])}"
        )
        return reply.status == 200

    await eventually(alice_has_it)
    state = await alice.call("GET", f"/rooms/{quote(room)}/state")
    assert SECRET["body"] not in str(state.body) and NIR not in str(state.body)
