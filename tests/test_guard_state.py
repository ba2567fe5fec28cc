"""Room state, reactions and relations: what may travel in clear (pure rules).

Each rule is tried the way someone would try to get around it: another state type,
another field of an allowed type, text hidden in keys, numbers or nested values.
"""

from __future__ import annotations

from typing import Any

import pytest

from bridge.guard.allowlist import AllowList
from bridge.guard.creation import check_room_creation
from bridge.guard.identifiers import nir_key
from bridge.guard.messages import is_emoji_only
from bridge.guard.policy import MEGOLM, EventFacts, RoomFacts, check_event_in_room
from bridge.guard.state_types import ALLOWED_STATE

A, B = "localhost:8481", "localhost:8482"
ALLOW = AllowList.build(A, [B])
ALICE, BOB = f"@alice:{A}", f"@bob:{B}"
NIR = "1850578006084" + f"{nir_key('1850578006084'):02d}"
SPACED = " ".join(NIR[i : i + 3] for i in range(0, 15, 3))
EVENT = "$" + "e" * 43
ROOM = RoomFacts(MEGOLM, frozenset({A, B}))

# What Matrix and Element write in each allowed state type.
TYPICAL: dict[str, tuple[str, dict[str, Any]]] = {
    "m.room.create": ("", {"room_version": "10", "creator": ALICE, "m.federate": True}),
    "m.room.member": (BOB, {"membership": "invite", "displayname": "Dr Bob", "is_direct": True}),
    "m.room.power_levels": ("", {"users": {ALICE: 100}, "events": {"m.room.name": 50}}),
    "m.room.join_rules": (
        "", {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": "!s:x"}]}
    ),
    "m.room.history_visibility": ("", {"history_visibility": "shared"}),
    "m.room.guest_access": ("", {"guest_access": "forbidden"}),
    "m.room.encryption": ("", {"algorithm": MEGOLM, "rotation_period_ms": 604800000}),
    "m.room.name": ("", {"name": "Cas 117 cardio"}),
    "m.room.topic": ("", {"topic": "RCP", "m.topic": [{"body": "RCP", "mimetype": "text/plain"}]}),
    "m.room.avatar": (
        "", {"url": f"mxc://{A}/AbCdEf", "info": {"w": 96, "h": 96, "mimetype": "image/png"}}
    ),
    "m.room.canonical_alias": ("", {"alias": f"#cas-117:{A}", "alt_aliases": []}),
    "m.room.pinned_events": ("", {"pinned": [EVENT]}),
    "m.room.server_acl": ("", {"allow": [A, B], "deny": [], "allow_ip_literals": False}),
    "m.room.tombstone": ("", {"body": "This room has been replaced", "replacement_room": "!n:x"}),
    "m.space.child": ("!child:x", {"via": [A], "suggested": False, "order": "a"}),
    "m.space.parent": ("!space:x", {"via": [A], "canonical": True}),
    "m.room.retention": ("", {"max_lifetime": 2592000000}),
    "io.element.functional_members": ("", {"service_members": [f"@caducee:{A}"]}),
    "org.matrix.msc3401.call.member": (
        f"_{ALICE}_DEVICE",
        {"application": "m.call", "call_id": "", "scope": "m.room", "device_id": "DEVICE",
         "expires": 14400000, "created_ts": 1764870000000,
         "foci_preferred": [{"type": "livekit", "livekit_service_url": "https://sfu.example"}]},
    ),
    "m.call.member": (f"_{ALICE}_DEVICE", {}),
}  # fmt: skip


def rule(
    event_type: str, content: dict[str, Any], key: str | None = "", sender: str = ALICE
) -> str | None:
    refusal = check_event_in_room(EventFacts(event_type, sender, content, key), ROOM, ALLOW)
    return None if refusal is None else refusal.rule


def test_every_allowed_type_is_tested() -> None:
    assert set(TYPICAL) | {"m.room.third_party_invite"} == set(ALLOWED_STATE)


@pytest.mark.parametrize("event_type", sorted(TYPICAL))
def test_what_matrix_and_element_write_passes(event_type: str) -> None:
    key, content = TYPICAL[event_type]
    assert rule(event_type, content, key) is None


@pytest.mark.parametrize(
    "event_type",
    [
        "org.example.note",
        "fr.caducee.patient",
        "im.vector.modular.widgets",
        "io.element.widgets.layout",
        "m.widget",
        "m.room.aliases",
        "m.room.message",
        "m.room.encrypted",
        "m.room.bot.options",
        "m.room.plumbing",
        "m.room.related_groups",
        "org.matrix.msc3672.beacon_info",
        "m.beacon_info",
        "io.element.voice_broadcast_info",
        "org.matrix.msc3401.call",
        "M.ROOM.NAME",
        "m.room.name ",
        "m.room.name\u200b",
        "",
    ],
)
def test_every_other_state_type_is_refused(event_type: str) -> None:
    assert rule(event_type, {"body": "Mme X, VIH+"}) == "state_type_forbidden"
    assert rule(event_type, {}, "any") == "state_type_forbidden"


@pytest.mark.parametrize("event_type", sorted(t for t, (f, _) in ALLOWED_STATE.items() if f))
def test_no_extra_field_in_an_allowed_type(event_type: str) -> None:
    key, content = TYPICAL[event_type]
    assert rule(event_type, {**content, "x.note": "Mme X, VIH+"}, key) == "field_forbidden"


def test_third_party_invites_stay_refused() -> None:
    assert rule("m.room.third_party_invite", {}, "token") == "third_party_invite_forbidden"


@pytest.mark.parametrize(
    ("event_type", "key", "content"),
    [
        ("m.room.member", BOB, {"membership": "invite", "reason": f"patient {NIR}"}),
        ("m.room.member", ALICE, {"membership": "join", "displayname": f"Dr A ({SPACED})"}),
        ("m.room.member", ALICE, {"membership": "leave", "reason": NIR}),
        ("m.room.member", ALICE, {"membership": "join", "avatar_url": f"mxc://{A}/{NIR}"}),
        ("m.room.power_levels", "", {"users": {f"@{NIR}:{A}": 0}}),
        ("m.room.power_levels", "", {"events": {f"x.{NIR}": 50}}),
        ("m.room.create", "", {"room_version": "10", "type": NIR}),
        ("m.room.server_acl", "", {"allow": [A], "deny": [f"{NIR}.example"]}),
        ("m.room.tombstone", "", {"body": f"NIR {NIR}", "replacement_room": "!n:x"}),
        ("m.room.pinned_events", "", {"pinned": [f"${NIR}"]}),
        ("m.room.retention", "", {"max_lifetime": int(NIR)}),
        ("m.room.name", "", {"name": f"Mme X {NIR[:13]}"}),  # typed: 13 digits are enough
        ("m.space.child", NIR, {"via": [A]}),
        ("m.room.topic", "", {"topic": "x", "m.topic": [{"body": f"suivi {NIR}"}]}),
        ("m.room.name", "", {"name": NIR.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))}),
        ("org.matrix.msc3401.call.member", f"_{ALICE}_D", {"nested": {"deep": [{"x": NIR}]}}),
        ("org.matrix.msc3401.call.member", f"_{ALICE}_D", {NIR: True}),
    ],
)
def test_every_string_of_accepted_state_is_scanned(
    event_type: str, key: str, content: dict[str, Any]
) -> None:
    assert rule(event_type, content, key) == "patient_identifier"


def test_json_numbers_are_held_to_the_keyed_nir_only() -> None:
    """Millisecond timestamps have 13 digits: as numbers they are machine data."""
    assert rule("m.room.retention", {"max_lifetime": int(NIR[:13])}) is None
    assert rule("m.room.retention", {"max_lifetime": int(NIR)}) == "patient_identifier"
    assert rule("m.room.retention", {"max_lifetime": 1764870000000}) is None


def test_content_too_deep_to_read_is_refused() -> None:
    deep: Any = "x"
    for _ in range(40):
        deep = [deep]
    assert rule("org.matrix.msc3401.call.member", {"x": deep}, "_k") == "field_forbidden"


# Room creation: everything the request turns into state is judged before the room exists


@pytest.mark.parametrize(
    ("request_body", "expected"),
    [
        ({"creation_content": {"m.federate": True}}, None),
        ({"creation_content": {"type": "m.space"}}, None),
        ({"creation_content": {"note": "Mme X, VIH+"}}, "field_forbidden"),
        ({"creation_content": {"type": f"case {NIR}"}}, "patient_identifier"),
        ({"creation_content": "Mme X"}, "field_forbidden"),
        ({"power_level_content_override": {"users": {ALICE: 100}}}, None),
        ({"power_level_content_override": {"users": {f"@{NIR}:{A}": 1}}}, "patient_identifier"),
        ({"power_level_content_override": {"note": "x"}}, "field_forbidden"),
        ({"initial_state": [{"type": "org.x", "content": {"body": "x"}}]}, "state_type_forbidden"),
        ({"initial_state": [{"type": "m.room.name", "content": {"b": "y"}}]}, "field_forbidden"),
        ({"topic": SPACED}, "patient_identifier"),
        ({"name": "Cas 117"}, None),
    ],
)  # fmt: skip
def test_room_creation_requests_are_judged_whole(
    request_body: dict[str, Any], expected: str | None
) -> None:
    refusal = check_room_creation({"preset": "private_chat", **request_body}, ALICE, ALLOW)
    assert (None if refusal is None else refusal.rule) == expected


# Reactions: sent in clear by Element Web, so emoji only


def reaction(key: object, **more: Any) -> dict[str, Any]:
    return {"m.relates_to": {"rel_type": "m.annotation", "event_id": EVENT, "key": key, **more}}


@pytest.mark.parametrize(
    "key", ["👍", "👍️", "👍🏽", "❤️", "🎉", "1️⃣", "#️⃣", "🇫🇷", "👨‍👩‍👧", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "✅", "☺"]
)
def test_emoji_reactions_pass(key: str) -> None:
    assert is_emoji_only(key)
    assert rule("m.reaction", reaction(key), key=None) is None


@pytest.mark.parametrize(
    "key",
    [
        "VIH+",
        "ok",
        "1",
        "+1",
        "Mme X",
        NIR,
        "👍 a",
        "👍a",
        "👍" * 33,
        "",
        "１",
        "٣",
        "👍\n",
        5,
        None,
    ],
)
def test_text_reactions_are_refused(key: object) -> None:
    assert not is_emoji_only(key)
    assert rule("m.reaction", reaction(key), key=None) is not None


@pytest.mark.parametrize(
    "content",
    [
        {**reaction("👍"), "body": "Mme X"},
        reaction("👍", note="Mme X"),
        {"m.relates_to": {"rel_type": "m.annotation", "key": "👍"}},
        {"m.relates_to": {"rel_type": "m.reference", "event_id": EVENT, "key": "👍"}},
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$Mme X", "key": "👍"}},
        {"m.relates_to": "👍"},
        {},
    ],
)
def test_reactions_carry_nothing_else(content: dict[str, Any]) -> None:
    assert rule("m.reaction", content, key=None) is not None


def test_redactions_carry_only_their_target_and_a_scanned_reason() -> None:
    assert rule("m.room.redaction", {"redacts": EVENT, "reason": "doublon"}, key=None) is None
    assert rule("m.room.redaction", {"redacts": EVENT, "note": "x"}, key=None) == "field_forbidden"
    assert rule("m.room.redaction", {"reason": SPACED}, key=None) == "patient_identifier"
