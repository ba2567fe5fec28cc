"""What a case room looks like, as a pure function of the request: the /createRoom body and
the link the requester clicks. Everything that protects the case is set at creation, in the
room's first events, so there is no moment where the room exists unprotected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from bot.cases.lifetime import lifetime_topic
from bot.cases.resume import REQUEST_MARK
from bot.expiry.policy import RETENTION_EVENT, retention_content
from bot.ids import RoomId, UserId, server_of

ENCRYPTION_ALGORITHM = "m.megolm.v1.aes-sha2"
FULL_POWER = 100
INVITE_LEVEL = 50
ROOM_NAME_PREFIX = "Cas · "
ROOM_VERSION = "12"
"""Pinned so the power levels below mean what they say. From version 12 on, the room's
creator (the bot) holds an unlimited power level that cannot be lowered, and the homeserver
refuses a ``users`` map that names the creator; in earlier versions the creator had to be
listed at 100 explicitly. Version 12 also lets the bot remove the requester (power 100) at
``!case close``: removing someone needs a power strictly above theirs."""
_CREATORS_PRIVILEGED = frozenset({"12"})


def case_room_name(label: str) -> str:
    """The room's display name: a fixed prefix and the (already checked) pseudonymous label."""
    return f"{ROOM_NAME_PREFIX}{label}"


def build_case_room_body(
    *,
    label: str,
    requester: UserId,
    bot: UserId,
    ttl_seconds: int,
    invite: Sequence[UserId] = (),
    room_version: str = ROOM_VERSION,
    request: str | None = None,
) -> dict[str, Any]:
    """The /createRoom body of a case room.

    - encrypted from the first message (``m.room.encryption`` in the initial state);
    - invite-only, history readable from one's invitation on, no guests;
    - inviting takes power 50, so plain members cannot widen the circle;
    - the requester at power 100 and the bot with full power (as the creator in room
      version 12, explicitly at 100 before), everyone else at the default (0);
    - ``m.room.retention`` with the lifetime plus a margin, so homeservers purge expired
      events too, after members' clients have received the bot's redaction;
    - not published in the room directory; the topic states the message lifetime and how
      to export, nothing else (nothing but the pseudonym shows);
    - ``request``: the requesting command's event id, kept in the creation content so an
      interrupted ``!case new`` finds its room again (`bot.cases.resume`).

    ``invite``: invited by the creation itself, in this order (``!case new`` passes its
    invitees, and falls back to one invitation at a time when the homeserver refuses one:
    `bot.commands.case`).
    """
    users: dict[str, int] = {requester: FULL_POWER}
    if room_version not in _CREATORS_PRIVILEGED:
        users[bot] = FULL_POWER
    creation_content: dict[str, Any] = {"m.federate": True}
    if request is not None:
        creation_content[REQUEST_MARK] = request
    return {
        "room_version": room_version,
        "preset": "private_chat",
        "visibility": "private",
        "name": case_room_name(label),
        "topic": lifetime_topic(ttl_seconds),
        "is_direct": False,
        "invite": list(invite),
        "creation_content": creation_content,
        "power_level_content_override": {
            "users": users,
            "users_default": 0,
            # Only the requester and admins bring people in, as with ``!case invite``.
            "invite": INVITE_LEVEL,
        },
        "initial_state": [
            {
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": ENCRYPTION_ALGORITHM},
            },
            {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "invite"}},
            {
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": "invited"},
            },
            {
                "type": "m.room.guest_access",
                "state_key": "",
                "content": {"guest_access": "forbidden"},
            },
            {
                "type": RETENTION_EVENT,
                "state_key": "",
                "content": retention_content(ttl_seconds * 1000),
            },
        ],
    }


def matrix_to_link(room_id: RoomId, via: Sequence[str]) -> str:
    """A matrix.to link to the room, with ``via`` servers so others' servers can find it.

    The room id is written as Element writes it (``!opaque:server``, with only characters
    outside the id's alphabet escaped); the room's own server is always the first ``via``.
    """
    servers: list[str] = []
    for server in (server_of(room_id), *via):
        if server and server not in servers:
            servers.append(server)
    query = "&".join(f"via={quote(s, safe=':[]')}" for s in servers)
    path = quote(room_id, safe="!:.-_~[]")
    return f"https://matrix.to/#/{path}" + (f"?{query}" if query else "")
