"""The guard as the backstop for what arrives over federation, from a server without it.

Every member homeserver runs the guard, so to see what a member server *without* it
could push, the test speaks federation itself: it signs events and requests with hs_b's
own signing key and sends them straight to hs_a's federation listener (loopback, the
local federation's CA), as a rogue or misconfigured hs_b would. hs_a must keep the
smuggled content out of the room (soft-failed and redacted), while a well-formed
encrypted event sent the same way arrives: the forging itself works.
"""

from __future__ import annotations

import json
import secrets
import ssl
import time
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from signedjson.key import read_signing_keys
from signedjson.sign import sign_json
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
from synapse.crypto.event_signing import add_hashes_and_signatures
from synapse.events import make_event_from_dict
from yarl import URL

from deploy.local.federation import Homeserver
from tests.megolm_support import megolm_content
from tests.test_guard_synapse import NIR, Client, eventually, http, user_on

pytestmark = pytest.mark.slow
__all__ = ["http"]

ROOM_VERSION = "10"


class RogueServer:
    """hs_b's name and signing key, speaking federation to hs_a directly."""

    def __init__(self, origin: Homeserver, target: Homeserver, session: aiohttp.ClientSession):
        with (origin.data_dir / "signing.key").open() as handle:
            self.key = read_signing_keys(handle)[0]
        self.origin, self.target, self.http = origin.server_name, target.server_name, session
        self.base = f"https://{target.server_name}"
        self.tls = ssl.create_default_context(cafile=str(target.ca.cert))

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        signed: dict[str, Any] = {
            "method": method, "uri": path, "origin": self.origin, "destination": self.target,
        }  # fmt: skip
        if body is not None:
            signed["content"] = body
        signed = sign_json(signed, self.origin, self.key)
        sig = signed["signatures"][self.origin][f"ed25519:{self.key.version}"]
        header = (
            f'X-Matrix origin="{self.origin}",destination="{self.target}",'
            f'key="ed25519:{self.key.version}",sig="{sig}"'
        )
        data = None if body is None else json.dumps(body)
        headers = {"Authorization": header, "Content-Type": "application/json"}
        async with self.http.request(
            method, URL(self.base + path, encoded=True), data=data, headers=headers, ssl=self.tls
        ) as response:
            return response.status, await response.json()

    async def event_type(self, event_id: str) -> str:
        status, body = await self.request("GET", f"/_matrix/federation/v1/event/{quote(event_id)}")
        assert status == 200, body
        return str(body["pdus"][0]["type"])

    async def push(self, room_id: str, sender: str, event_type: str, content: dict[str, Any],
                   state_key: str | None = None) -> str:  # fmt: skip
        """Builds an event on the room's current tip, signs it as hs_b and sends it."""
        status, template = await self.request(
            "GET", f"/_matrix/federation/v1/make_join/{quote(room_id)}/{quote(sender)}?ver=10"
        )
        assert status == 200, template
        join = template["event"]
        wanted = {"m.room.create", "m.room.power_levels", "m.room.member"}
        auth = [e for e in join["auth_events"] if await self.event_type(e) in wanted]
        event: dict[str, Any] = {
            "room_id": room_id, "sender": sender, "type": event_type, "content": content,
            "prev_events": join["prev_events"], "auth_events": auth, "depth": join["depth"],
            "origin_server_ts": int(time.time() * 1000), "origin": self.origin,
        }  # fmt: skip
        if state_key is not None:
            event["state_key"] = state_key
        version = KNOWN_ROOM_VERSIONS[ROOM_VERSION]
        add_hashes_and_signatures(version, event, self.origin, self.key)
        event_id = make_event_from_dict(event, version).event_id
        txn = secrets.token_hex(8)
        body = {
            "origin": self.origin,
            "origin_server_ts": event["origin_server_ts"],
            "pdus": [event],
        }
        status, answer = await self.request("PUT", f"/_matrix/federation/v1/send/{txn}", body)
        assert status == 200, answer
        assert answer["pdus"].get(event_id) == {}, answer  # accepted for processing
        return event_id


async def test_what_a_server_without_the_guard_pushes_is_kept_out(
    hs_a: Homeserver, hs_b: Homeserver, http: aiohttp.ClientSession
) -> None:
    alice, bob = await user_on(hs_a, http, "alice"), await user_on(hs_b, http, "bob")
    room = await alice.new_room(preset="private_chat", room_version=ROOM_VERSION)
    assert (await alice.invite(room, bob.user_id)).status == 200
    assert (await bob.join(room, hs_a.server_name)).status == 200
    rogue = RogueServer(hs_b, hs_a, http)

    # The control: a real encrypted event forged the same way reaches alice intact
    real = megolm_content()
    good = await rogue.push(room, bob.user_id, "m.room.encrypted", real)
    await eventually(lambda: _has(alice, room, good, real["ciphertext"]))

    smuggled = [
        await rogue.push(room, bob.user_id, "org.example.note", {"body": "Mme X, VIH+"}, ""),
        await rogue.push(room, bob.user_id, "m.room.encrypted", {**real, "ciphertext": "Mme X"}),
        await rogue.push(room, bob.user_id, "m.room.name", {"name": f"Patient {NIR}"}, ""),
        await rogue.push(room, bob.user_id, "m.room.member",
                         {"membership": "join", "displayname": f"Dr B {NIR}"}, bob.user_id),
    ]  # fmt: skip
    # Once a later good event arrived, the smuggled ones were processed before it
    after = await rogue.push(room, bob.user_id, "m.room.encrypted", megolm_content())
    await eventually(lambda: _has(alice, room, after, None))
    state = await alice.call("GET", f"/rooms/{quote(room)}/state")
    assert "VIH+" not in json.dumps(state.body) and NIR not in json.dumps(state.body)
    for event_id in smuggled:
        seen = await alice.call("GET", f"/rooms/{quote(room)}/event/{quote(event_id)}")
        assert "VIH+" not in json.dumps(seen.body) and NIR not in json.dumps(seen.body)


async def _has(reader: Client, room: str, event_id: str, ciphertext: str | None) -> bool:
    reply = await reader.call("GET", f"/rooms/{quote(room)}/event/{quote(event_id)}")
    if reply.status != 200:
        return False
    return ciphertext is None or reply.body["content"].get("ciphertext") == ciphertext
