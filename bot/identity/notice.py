"""A notice every device in the room can read, whatever the bot thinks of those devices.

The bot's ordinary messages use the room's shared key, which goes only to devices it trusts.
A doctor whose identity reset is pending has no such device, so an ordinary answer would reach
them as "Unable to decrypt". For the fixed, secret-free texts of `bot.identity.texts` the bot
makes a Megolm session used for that one message, gives its key over Olm to every device of
every member, sends the message, and forgets the session: nothing else is ever encrypted
with a key an untrusted device holds.

This reaches into nio's Olm machine (`olm_encrypt` from `bot.matrix.nio_private`, the session
store), which has no public call to share a key with chosen devices.
"""

from __future__ import annotations

import logging
from typing import Any

from nio.api import Api
from nio.crypto.sessions import OutboundGroupSession

from bot.ids import EventId, RoomId
from bot.matrix import requests
from bot.matrix.homeserver import NioJson
from bot.matrix.nio_private import olm_encrypt

logger = logging.getLogger(__name__)

MEGOLM = "m.megolm.v1.aes-sha2"


class NoticeNotSent(Exception):
    """The notice could not be sent; the message says why (for logs)."""


def _devices(client: Any, room: Any) -> list[Any]:
    found = []
    for user_id in room.users:
        for device in client.device_store.active_user_devices(user_id):
            if user_id == client.user_id and device.id == client.device_id:
                continue
            found.append(device)
    return found


async def send_readable(client: Any, room_id: RoomId, body: str) -> EventId:
    """Send `body` as an ``m.notice`` that every member's every device can decrypt."""
    olm = client.olm
    room = client.rooms.get(room_id)
    if olm is None or room is None:
        raise NoticeNotSent("the bot is not in that room")
    if not room.members_synced:  # lazy loading, or a room known only by its id since a restart
        await client.joined_members(room_id)
    devices = _devices(client, room)
    missing: dict[str, list[str]] = {}
    for device in devices:
        if olm.session_store.get(device.curve25519) is None:
            missing.setdefault(device.user_id, []).append(device.id)
    if missing:
        await client.keys_claim(missing)
    session = OutboundGroupSession()
    own_curve = olm.account.identity_keys["curve25519"]
    # Our own copy, so the bot can read its own message back like any other.
    olm.create_group_session(
        own_curve, olm.account.identity_keys["ed25519"], room_id, session.id, session.session_key
    )
    key = {
        "algorithm": MEGOLM,
        "room_id": room_id,
        "session_id": session.id,
        "session_key": session.session_key,
    }
    messages: dict[str, dict[str, Any]] = {}
    for device in devices:
        olm_session = olm.session_store.get(device.curve25519)
        if olm_session is None:
            logger.info("No Olm session with device %s of %s", device.id, device.user_id)
            continue
        messages.setdefault(device.user_id, {})[device.id] = olm_encrypt(
            olm, olm_session, device, "m.room_key", key
        )
    http = NioJson(client)
    if messages:
        status, _ = await http.request_json(*requests.send_to_device("m.room.encrypted", messages))
        if status != 200:
            raise NoticeNotSent(f"the room key could not be delivered (HTTP {status})")
    session.shared = True  # nio's guard against encrypting before sharing: it is, above
    payload = {"type": "m.room.message", "room_id": room_id, "content": _content(body)}
    ciphertext = session.encrypt(Api.to_json(payload))
    event = {
        "algorithm": MEGOLM,
        "sender_key": own_curve,
        "ciphertext": ciphertext,
        "session_id": session.id,
        "device_id": client.device_id,
    }
    status, answer = await http.request_json(
        *requests.room_send(room_id, "m.room.encrypted", event)
    )
    event_id = answer.get("event_id") if isinstance(answer, dict) else None
    if status != 200 or not isinstance(event_id, str):
        raise NoticeNotSent(f"the homeserver refused the notice (HTTP {status})")
    return EventId(event_id)


def _content(body: str) -> dict[str, str]:
    return {"msgtype": "m.notice", "body": body}
