"""What the guard allows, as pure functions over plain data.

Every member homeserver of a medical federation enforces the same rules, whoever asks
(an ordinary user, a server admin, or another homeserver over federation):

- only servers on the allow-list take part: no invitation, join or event from or to
  anyone else, and nothing new in a room shared with an outsider (leaving, removing
  people and deleting messages stay possible so such a room can be cleaned up);
- every room is end-to-end encrypted with Megolm; its encryption cannot be removed or
  changed, and no message-like (non-state) event travels in clear: only
  `m.room.encrypted` shaped like real Olm/Megolm ciphertext, emoji reactions and
  redactions (see `messages`). Receipts and typing notifications are not room events
  and are not affected;
- room state is limited to the types Matrix and Element use, with their fields
  (`state_types`);
- rooms are invite-only ("invite" or "restricted" join rules; "public" and the
  knocking rules are refused because they advertise the room and its name to
  strangers), without guest access, with history never readable by everyone, and
  never published in the room directory; no invitation by e-mail or phone number;
- no patient identifier in anything Matrix does not encrypt: every string of every
  state event (display names and membership reasons included), aliases, reactions,
  relations and redaction reasons.

A refusal (`refusals`) carries a stable rule id (for logs and clients) and a message
in English and French that tells a doctor what to do instead. Messages never repeat
the offending content.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.guard.allowlist import AllowList, server_of
from bridge.guard.identifiers import NamedPattern
from bridge.guard.messages import check_message, scan
from bridge.guard.refusals import (
    GUEST_ACCESS,
    MEGOLM,
    NOT_MEGOLM,
    PUBLISHED,
    ROOM_NOT_ENCRYPTED,
    THIRD_PARTY_INVITE,
    Refusal,
    field_forbidden,
    history_visibility,
    join_rule,
    outsider,
    shared_with_outsider,
    state_type_forbidden,
)
from bridge.guard.state_types import allowed_fields

__all__ = ["MEGOLM", "PUBLISHED", "THIRD_PARTY_INVITE", "Refusal", "join_rule"]

ALLOWED_JOIN_RULES = frozenset({"invite", "restricted"})
ALLOWED_HISTORY_VISIBILITY = frozenset({"invited", "joined", "shared"})
# Memberships that bring someone (or their server) into a room.
ENTERING_MEMBERSHIPS = frozenset({"invite", "join", "knock"})

# State whose text is shown to people and travels unencrypted: what it is called.
_SCANNED_STATE = {
    "m.room.name": ("room name", "nom du salon"),
    "m.room.topic": ("room topic", "sujet du salon"),
    "m.room.canonical_alias": ("room address", "adresse du salon"),
    "m.room.member": ("display name or reason", "nom affiché ou motif"),
}
_STATE_FIELD = ("room settings", "réglages du salon")


@dataclass(frozen=True)
class EventFacts:
    """The parts of a Matrix event the policy looks at."""

    type: str
    sender: str
    content: Mapping[str, Any]
    state_key: str | None = None


@dataclass(frozen=True)
class RoomFacts:
    """The parts of a room's current state the policy looks at."""

    encryption_algorithm: str | None
    participant_servers: frozenset[str]


def _is_self_leave(event: EventFacts) -> bool:
    return (
        event.type == "m.room.member"
        and event.content.get("membership") == "leave"
        and event.state_key == event.sender
    )


def _is_cleanup(event: EventFacts) -> bool:
    """Leaving, kicking, banning and redacting shrink exposure: always welcome."""
    if event.type == "m.room.redaction":
        return True
    return event.type == "m.room.member" and event.content.get("membership") in ("leave", "ban")


def _check_state(
    event: EventFacts, allow: AllowList, extra: Sequence[NamedPattern]
) -> Refusal | None:
    allowed, fields = allowed_fields(event.type)
    if event.type == "m.room.third_party_invite" or "third_party_invite" in event.content:
        return THIRD_PARTY_INVITE
    if not allowed:
        return state_type_forbidden(event.type)
    if fields is not None and not set(event.content) <= fields:
        return field_forbidden(event.type, set(event.content) - fields)
    refusal = _check_setting(event, allow)
    if refusal is not None:
        return refusal
    where = _SCANNED_STATE.get(event.type, _STATE_FIELD)
    return scan(event.state_key, where, extra) or scan(event.content, where, extra)


def _check_setting(event: EventFacts, allow: AllowList) -> Refusal | None:
    """The rules on the values of the settings that decide who can get in and read."""
    content = event.content
    if event.type == "m.room.member":
        target = event.state_key or ""
        if content.get("membership") in ENTERING_MEMBERSHIPS and not allow.allows_user(target):
            return outsider(server_of(target))
        return None
    if event.type == "m.room.encryption":
        return None if content.get("algorithm") == MEGOLM else NOT_MEGOLM
    if event.type == "m.room.join_rules":
        rule = content.get("join_rule")
        return None if rule in ALLOWED_JOIN_RULES else join_rule(rule)
    if event.type == "m.room.guest_access":
        return None if content.get("guest_access") == "forbidden" else GUEST_ACCESS
    if event.type == "m.room.history_visibility":
        value = content.get("history_visibility")
        return None if value in ALLOWED_HISTORY_VISIBILITY else history_visibility(value)
    return None


def check_event(
    event: EventFacts, allow: AllowList, extra: Sequence[NamedPattern] = ()
) -> Refusal | None:
    """The rules that need nothing but the event itself.

    Used for events arriving over federation (where Synapse gives the module no room
    state) and as the first half of `check_event_in_room`.
    """
    if not allow.allows_user(event.sender) and not _is_self_leave(event):
        return outsider(server_of(event.sender))
    if event.state_key is not None:
        return _check_state(event, allow, extra)
    return check_message(event.type, event.content, extra)


def check_event_in_room(
    event: EventFacts, room: RoomFacts, allow: AllowList, extra: Sequence[NamedPattern] = ()
) -> Refusal | None:
    """All rules, for an event about to enter a room whose state is known."""
    refusal = check_event(event, allow, extra)
    if refusal is not None or _is_cleanup(event):
        return refusal
    for server in sorted(room.participant_servers):
        if not allow.allows(server):
            return shared_with_outsider(server)
    if event.state_key is None and room.encryption_algorithm != MEGOLM:
        return ROOM_NOT_ENCRYPTED
    return None


def room_facts(state: Iterable[EventFacts]) -> RoomFacts:
    """Summarise a room's state: its encryption and every server that takes part."""
    algorithm: str | None = None
    servers: set[str] = set()
    for event in state:
        if event.type == "m.room.encryption" and event.state_key == "":
            found = event.content.get("algorithm")
            algorithm = found if isinstance(found, str) else None
        elif event.type == "m.room.create" and event.state_key == "":
            creators = [event.sender, *_str_list(event.content.get("additional_creators"))]
            servers.update(s for s in map(server_of, creators) if s is not None)
        elif (
            event.type == "m.room.member"
            and event.state_key is not None
            and event.content.get("membership") in ENTERING_MEMBERSHIPS
        ):
            server = server_of(event.state_key)
            servers.add(server if server is not None else event.state_key)
    return RoomFacts(algorithm, frozenset(servers))


def _str_list(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def check_invite(inviter: str, invitee: str, allow: AllowList) -> Refusal | None:
    for user in (inviter, invitee):
        if not allow.allows_user(user):
            return outsider(server_of(user))
    return None


def check_join(user_id: str, room_id: str, allow: AllowList) -> Refusal | None:
    """A join: the user's server and, when the room id names one, the room's server."""
    if not allow.allows_user(user_id):
        return outsider(server_of(user_id))
    room_server = server_of(room_id)
    if room_server is not None and not allow.allows(room_server):
        return outsider(room_server)
    return None


def check_alias(alias: str, extra: Sequence[NamedPattern] = ()) -> Refusal | None:
    localpart = alias.partition(":")[0]
    return scan(localpart, _SCANNED_STATE["m.room.canonical_alias"], extra)
