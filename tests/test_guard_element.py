"""Element's everyday features still work through the guard, on both member homeservers.

Two Element devices (matrix-js-sdk with Element's Rust crypto, `tests/element`) on hs_a
and hs_b use a room hosted by either server: replies, edits, reactions, threads, read
receipts, deletions, pinned messages and the room avatar. Element's SDK decides what it
encrypts and what it leaves in clear, exactly as in Element; the guard must accept all
of it, and still refuse a text reaction.

What travels in clear, and why it is acceptable, is listed in `bridge/guard/messages.py`
and the guard README; the assertions on `wire_content` below pin it down.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from deploy.local.federation import Homeserver
from tests.element_driver import ElementClient, ElementClientError
from tests.test_element_client import MakeElement, element

pytestmark = pytest.mark.slow
__all__ = ["element"]

# What an encrypted message from Element carries in clear: crypto fields and the relation.
WIRE_FIELDS = {"algorithm", "ciphertext", "device_id", "m.relates_to", "sender_key", "session_id"}

# A 1x1 transparent PNG: the room avatar.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


async def see(reader: ElementClient, room: str, event_id: str) -> dict[str, Any]:
    return await reader.request("see_event", room_id=room, event_id=event_id)


async def send(
    writer: ElementClient, room: str, kind: str, content: dict[str, Any], **more: Any
) -> str:
    result = await writer.request("send_event", room_id=room, type=kind, content=content, **more)
    event_id: str = result["event_id"]
    return event_id


def text(body: str, **more: Any) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": body, "m.mentions": {}, **more}


@pytest.mark.parametrize("host", ["hs_a", "hs_b"])
async def test_element_features_work_through_the_guard(
    host: str, hs_a: Homeserver, hs_b: Homeserver, element: MakeElement
) -> None:
    home, other = (hs_a, hs_b) if host == "hs_a" else (hs_b, hs_a)
    alice, bob = await element(home, "alice"), await element(other, "bob")
    assert alice.user_id and bob.user_id
    room = (await alice.request("create_room", invite=[bob.user_id], wait_join=False))["room_id"]
    assert await bob.wait_for_invite(sender=alice.user_id) == room
    await bob.join(room)
    await alice.wait_for_join(room, bob.user_id)

    # A message, a reply and an edit: all encrypted; only the relation travels in clear
    first = await alice.send(room, "Bonjour, avis sur le cas ?")
    seen = await see(bob, room, first)
    assert seen["decrypted"] and seen["wire_type"] == "m.room.encrypted"
    reply = await send(
        bob,
        room,
        "m.room.message",
        text("Reçu", **{"m.relates_to": {"m.in_reply_to": {"event_id": first}}}),
    )
    seen = await see(alice, room, reply)
    assert set(seen["wire_content"]) == WIRE_FIELDS
    assert seen["wire_content"]["m.relates_to"] == {"m.in_reply_to": {"event_id": first}}
    assert seen["decrypted"] and seen["content"]["body"] == "Reçu"
    assert seen["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == first
    edit = await send(
        bob,
        room,
        "m.room.message",
        text(
            "* Reçu, je regarde",
            **{
                "m.new_content": text("Reçu, je regarde"),
                "m.relates_to": {"rel_type": "m.replace", "event_id": reply},
            },
        ),
    )
    seen = await see(alice, room, edit)
    assert seen["decrypted"] and seen["wire_content"]["m.relates_to"]["rel_type"] == "m.replace"
    assert "body" not in seen["wire_content"] and "m.new_content" not in seen["wire_content"]

    # A thread
    in_thread = await send(
        bob,
        room,
        "m.room.message",
        text(
            "Dans le fil",
            **{
                "m.relates_to": {
                    "rel_type": "m.thread",
                    "event_id": first,
                    "is_falling_back": True,
                    "m.in_reply_to": {"event_id": first},
                }
            },
        ),
        thread_id=first,
    )
    seen = await see(alice, room, in_thread)
    assert set(seen["wire_content"]) == WIRE_FIELDS
    assert seen["wire_content"]["m.relates_to"]["rel_type"] == "m.thread"
    assert seen["decrypted"] and seen["thread_root"] == first

    # A reaction: Element's SDK sends it in clear; an emoji passes, text does not
    reaction = {"m.relates_to": {"rel_type": "m.annotation", "event_id": first, "key": "👍"}}
    thumbs = await send(bob, room, "m.reaction", reaction)
    seen = await see(alice, room, thumbs)
    assert seen["wire_type"] == "m.reaction" and seen["content"] == reaction
    text_reaction = {"m.relates_to": {"rel_type": "m.annotation", "event_id": first, "key": "VIH+"}}
    with pytest.raises(ElementClientError) as refused:
        await send(bob, room, "m.reaction", text_reaction)
    assert refused.value.code == "M_FORBIDDEN" and "emoji" in str(refused.value)

    # A read receipt (not a room event: untouched by the guard)
    await alice.request("read_receipt", room_id=room, event_id=in_thread)
    await bob.request("see_receipt", room_id=room, user_id=alice.user_id, event_id=in_thread)

    # A deletion with a reason
    mistake = await alice.send(room, "Message envoyé par erreur")
    await see(bob, room, mistake)
    await alice.request("redact", room_id=room, event_id=mistake, reason="doublon")
    gone = await bob.request("see_event", room_id=room, event_id=mistake, redacted=True)
    assert gone["redacted"] and "body" not in gone["content"]

    # A pinned message and a room avatar (state, in clear by nature)
    pins = {"pinned": [first]}
    await alice.request("send_state", room_id=room, type="m.room.pinned_events", content=pins)
    await bob.request("see_state", room_id=room, type="m.room.pinned_events", content=pins)
    uri = (
        await alice.request(
            "upload", base64=base64.b64encode(PNG).decode(), content_type="image/png"
        )
    )["content_uri"]
    avatar = {"url": uri, "info": {"mimetype": "image/png", "size": len(PNG), "w": 1, "h": 1}}
    await alice.request("send_state", room_id=room, type="m.room.avatar", content=avatar)
    await bob.request("see_state", room_id=room, type="m.room.avatar", content=avatar)
