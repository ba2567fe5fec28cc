"""Room creation: refuse a bad /createRoom up front, and make a good one secure.

Synapse creates a room as a series of events and does not roll back when one of them
is refused halfway, so a forbidden setting must be caught in the request itself,
before the room exists. The request is turned into the events it would produce and
each goes through the same rules as any event (`policy.check_event`).

Two of Synapse's defaults do not fit a medical federation, and the request is
amended rather than refused, so that ordinary clients keep working:

- the "private_chat" presets turn guest access on: the guard adds
  `m.room.guest_access: forbidden` when the request does not say otherwise;
- encryption is only forced when the homeserver is configured to; the guard adds
  `m.room.encryption` with Megolm when the request has none, so a room is encrypted
  from its first event whatever the server configuration.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from bridge.guard.allowlist import AllowList
from bridge.guard.identifiers import NamedPattern
from bridge.guard.policy import (
    MEGOLM,
    PUBLISHED,
    THIRD_PARTY_INVITE,
    EventFacts,
    Refusal,
    check_event,
    join_rule,
)

_PRESET_JOIN_RULES = {
    "private_chat": "invite",
    "trusted_private_chat": "invite",
    "public_chat": "public",
}

SECURE_DEFAULTS: tuple[tuple[str, dict[str, str]], ...] = (
    ("m.room.encryption", {"algorithm": MEGOLM}),
    ("m.room.guest_access", {"guest_access": "forbidden"}),
)


def _initial_state(request: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    entries = request.get("initial_state")
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, Mapping) and isinstance(e.get("type"), str)]


def _state_keys(request: Mapping[str, Any]) -> set[tuple[str, str]]:
    return {(e["type"], str(e.get("state_key", ""))) for e in _initial_state(request)}


def _requested_events(
    request: Mapping[str, Any], creator: str, own_server: str
) -> Iterator[EventFacts]:
    """The events this request would make Synapse send, as far as the policy cares."""
    for entry in _initial_state(request):
        content = entry.get("content")
        yield EventFacts(
            type=entry["type"],
            sender=creator,
            content=content if isinstance(content, Mapping) else {},
            state_key=str(entry.get("state_key", "")),
        )
    creation_content = request.get("creation_content")
    if creation_content is not None:
        content = creation_content if isinstance(creation_content, Mapping) else {"?": None}
        yield EventFacts("m.room.create", creator, content, "")
    power_levels = request.get("power_level_content_override")
    if power_levels is not None:
        content = power_levels if isinstance(power_levels, Mapping) else {"?": None}
        yield EventFacts("m.room.power_levels", creator, content, "")
    if "name" in request:
        yield EventFacts("m.room.name", creator, {"name": request["name"]}, "")
    if "topic" in request:
        yield EventFacts("m.room.topic", creator, {"topic": request["topic"]}, "")
    alias_name = request.get("room_alias_name")
    if alias_name is not None:
        alias = f"#{alias_name}:{own_server}"
        yield EventFacts("m.room.canonical_alias", creator, {"alias": alias}, "")
    invites = request.get("invite")
    for invitee in invites if isinstance(invites, list) else []:
        if isinstance(invitee, str):
            yield EventFacts("m.room.member", creator, {"membership": "invite"}, invitee)


def _effective_join_rule(request: Mapping[str, Any]) -> object:
    for entry in _initial_state(request):
        if entry["type"] == "m.room.join_rules" and entry.get("state_key", "") == "":
            content = entry.get("content")
            return content.get("join_rule") if isinstance(content, Mapping) else None
    preset = request.get("preset")
    if preset is None:
        preset = "public_chat" if request.get("visibility") == "public" else "private_chat"
    return _PRESET_JOIN_RULES.get(str(preset), "invite")


def check_room_creation(
    request: Mapping[str, Any],
    creator: str,
    allow: AllowList,
    extra: Sequence[NamedPattern] = (),
) -> Refusal | None:
    """Whether this /createRoom body may create a room, judged before anything exists."""
    if request.get("visibility") == "public":
        return PUBLISHED
    if request.get("invite_3pid"):
        return THIRD_PARTY_INVITE
    rule = _effective_join_rule(request)
    if rule not in ("invite", "restricted"):
        return join_rule(rule)
    for event in _requested_events(request, creator, allow.own_server):
        refusal = check_event(event, allow, extra)
        if refusal is not None:
            return refusal
    return None


def secure_initial_state(request: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The state entries to add to ``initial_state`` (Megolm, no guests) when absent."""
    present = _state_keys(request)
    return [
        {"type": event_type, "state_key": "", "content": dict(content)}
        for event_type, content in SECURE_DEFAULTS
        if (event_type, "") not in present
    ]
