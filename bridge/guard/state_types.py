"""Which room state a medical room may hold: an explicit allow-list.

State travels in clear to every member server and never expires (the expiry engine
purges messages, not state), so a room holds only the state that Matrix and Element
really use, each with the fields they write. Any other type, or another field in an
allowed type, is refused: otherwise `{"body": "Mme X, VIH+"}` in a made-up state event
(or a made-up field of `m.room.name`) would sit in clear on every server forever.

Each entry: the fields the content may have (None: free-form, every string scanned),
and where the type comes from. The guard README has the table with the reasons;
`m.room.third_party_invite` is refused by its own rule (no invitations by e-mail).
"""

from __future__ import annotations

from collections.abc import Mapping

SPEC = "Matrix spec"
WEB = "Element Web"
X = "Element X"
CALL = "Element Call"
CADUCEE = "Caducée bot"

# type -> (allowed content fields or None for free-form, who sends it)
ALLOWED_STATE: Mapping[str, tuple[frozenset[str] | None, str]] = {
    "m.room.create": (
        frozenset(
            {
                "creator",
                "m.federate",
                "room_version",
                "predecessor",
                "type",
                "additional_creators",
                # The bot's own: the event id of the `!case new` that made the room, so an
                # interrupted command finds its room again (an id, scanned like the rest).
                "fr.caducee.request",
            }
        ),
        SPEC,
    ),
    "m.room.member": (
        frozenset(
            {
                "membership",
                "displayname",
                "avatar_url",
                "reason",
                "is_direct",
                "join_authorised_via_users_server",
                "third_party_invite",
            }
        ),
        SPEC,
    ),
    "m.room.power_levels": (
        frozenset(
            {
                "ban",
                "events",
                "events_default",
                "historical",
                "invite",
                "kick",
                "notifications",
                "redact",
                "state_default",
                "users",
                "users_default",
            }
        ),
        SPEC,
    ),
    "m.room.join_rules": (frozenset({"join_rule", "allow"}), SPEC),
    "m.room.history_visibility": (frozenset({"history_visibility"}), SPEC),
    "m.room.guest_access": (frozenset({"guest_access"}), SPEC),
    "m.room.encryption": (
        frozenset({"algorithm", "rotation_period_ms", "rotation_period_msgs"}),
        SPEC,
    ),
    "m.room.name": (frozenset({"name"}), SPEC),
    "m.room.topic": (frozenset({"topic", "m.topic"}), SPEC),
    "m.room.avatar": (frozenset({"url", "info"}), SPEC),
    "m.room.canonical_alias": (frozenset({"alias", "alt_aliases"}), SPEC),
    "m.room.pinned_events": (frozenset({"pinned"}), SPEC),
    "m.room.server_acl": (frozenset({"allow", "deny", "allow_ip_literals"}), SPEC),
    "m.room.tombstone": (frozenset({"body", "replacement_room"}), SPEC),
    "m.room.third_party_invite": (frozenset(), SPEC),
    "m.space.child": (frozenset({"via", "order", "suggested"}), SPEC),
    "m.space.parent": (frozenset({"via", "canonical"}), SPEC),
    "m.room.retention": (frozenset({"max_lifetime", "min_lifetime"}), CADUCEE),
    "io.element.functional_members": (frozenset({"service_members"}), WEB),
    # MatrixRTC call membership (MSC3401/MSC4143): still evolving, so free-form.
    "org.matrix.msc3401.call.member": (None, CALL),
    "m.call.member": (None, CALL),
}


def allowed_fields(event_type: str) -> tuple[bool, frozenset[str] | None]:
    """Whether the type is allowed, and the fields its content may have (None: any)."""
    entry = ALLOWED_STATE.get(event_type)
    if entry is None:
        return False, None
    return True, entry[0]
