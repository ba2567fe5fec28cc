"""The guard's rules, decided on plain data (no Synapse running)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bridge.guard.allowlist import AllowList, AllowListHolder, is_valid_server_name, server_of
from bridge.guard.creation import check_room_creation, secure_initial_state
from bridge.guard.identifiers import NamedPattern, nir_key
from bridge.guard.policy import (
    MEGOLM,
    EventFacts,
    RoomFacts,
    check_alias,
    check_event,
    check_event_in_room,
    check_invite,
    check_join,
    room_facts,
)
from tests.megolm_support import megolm_content

A, B, C = "localhost:8481", "localhost:8482", "localhost:8483"
ALLOW = AllowList.build(A, [B])
ALICE, BOB, CAROL = f"@alice:{A}", f"@bob:{B}", f"@carol:{C}"
NIR = "1850578006084" + f"{nir_key('1850578006084'):02d}"
ENCRYPTED = megolm_content()
GOOD_ROOM = RoomFacts(MEGOLM, frozenset({A, B}))


def state(
    event_type: str, content: dict[str, Any], sender: str = ALICE, key: str = ""
) -> EventFacts:
    return EventFacts(event_type, sender, content, key)


def message(event_type: str, content: dict[str, Any], sender: str = ALICE) -> EventFacts:
    return EventFacts(event_type, sender, content, None)


def rule_of(event: EventFacts, room: RoomFacts = GOOD_ROOM) -> str | None:
    refusal = check_event_in_room(event, room, ALLOW)
    return None if refusal is None else refusal.rule


# Allow-list


def test_own_server_is_always_allowed_and_names_compare_without_case() -> None:
    only_me = AllowList.build("HS.Example.org:8448", [])
    assert only_me.allows("hs.example.org:8448")
    assert not only_me.allows("hs.example.org")  # another port is another server
    assert not only_me.allows(None)


def test_server_of_reads_user_ids_aliases_and_old_room_ids() -> None:
    assert server_of("@alice:localhost:8481") == "localhost:8481"
    assert server_of("#case:Example.org") == "example.org"
    assert server_of("!abc:localhost:8482") == "localhost:8482"
    assert server_of("!hashonlyv12room") is None


@pytest.mark.parametrize("name", ["localhost:8481", "hs.example.org", "[::1]:8448", "127.0.0.1"])
def test_valid_server_names(name: str) -> None:
    assert is_valid_server_name(name)


@pytest.mark.parametrize("name", ["", "http://hs.org", "hs.org:0", "hs.org:70000", "a b", "@u:hs"])
def test_invalid_server_names(name: str) -> None:
    assert not is_valid_server_name(name)


def test_a_refresher_can_swap_the_list_and_the_own_server_stays() -> None:
    holder = AllowListHolder(ALLOW)
    holder.replace([C])
    assert holder.current.allows(C) and holder.current.allows(A)
    assert not holder.current.allows(B)


# Servers


def test_events_from_a_server_off_the_list_are_refused() -> None:
    refusal = check_event(message("m.room.encrypted", ENCRYPTED, CAROL), ALLOW)
    assert refusal is not None and refusal.rule == "server_not_allowed"
    assert C in refusal.english and C in refusal.french


def test_events_from_members_pass() -> None:
    assert check_event(message("m.room.encrypted", ENCRYPTED, BOB), ALLOW) is None


@pytest.mark.parametrize("membership", ["invite", "join", "knock"])
def test_nobody_off_the_list_enters_a_room(membership: str) -> None:
    event = state("m.room.member", {"membership": membership}, ALICE, CAROL)
    assert rule_of(event) == "server_not_allowed"


def test_members_of_allowed_servers_can_be_invited() -> None:
    assert rule_of(state("m.room.member", {"membership": "invite"}, ALICE, BOB)) is None


def test_outsiders_can_still_be_removed_and_can_leave() -> None:
    room = RoomFacts(MEGOLM, frozenset({A, C}))
    assert rule_of(state("m.room.member", {"membership": "leave"}, ALICE, CAROL), room) is None
    assert rule_of(state("m.room.member", {"membership": "ban"}, ALICE, CAROL), room) is None
    assert rule_of(state("m.room.member", {"membership": "leave"}, CAROL, CAROL), room) is None
    assert rule_of(message("m.room.redaction", {"redacts": "$x"}), room) is None


def test_nothing_new_in_a_room_shared_with_an_outsider() -> None:
    room = RoomFacts(MEGOLM, frozenset({A, C}))
    assert rule_of(message("m.room.encrypted", ENCRYPTED), room) == "room_shared_with_outsider"
    assert rule_of(state("m.room.name", {"name": "x"}), room) == "room_shared_with_outsider"


def test_invites_and_joins_check_both_servers() -> None:
    assert check_invite(ALICE, BOB, ALLOW) is None
    assert check_invite(ALICE, CAROL, ALLOW) is not None
    assert check_invite(CAROL, ALICE, ALLOW) is not None
    assert check_join(ALICE, f"!room:{B}", ALLOW) is None
    assert check_join(ALICE, "!v12roomhash", ALLOW) is None
    refusal = check_join(ALICE, f"!room:{C}", ALLOW)
    assert refusal is not None and C in refusal.english


def test_third_party_invites_are_refused() -> None:
    event = state("m.room.member", {"membership": "invite", "third_party_invite": {}}, ALICE, BOB)
    assert rule_of(event) == "third_party_invite_forbidden"
    assert rule_of(state("m.room.third_party_invite", {}, ALICE, "token")) == (
        "third_party_invite_forbidden"
    )


# Encryption


@pytest.mark.parametrize(
    "content", [{"algorithm": "m.olm.v1.curve25519-aes-sha2"}, {"algorithm": "none"}, {}]
)
def test_encryption_other_than_megolm_is_refused(content: dict[str, Any]) -> None:
    assert rule_of(state("m.room.encryption", content)) == "encryption_required"


def test_megolm_encryption_is_accepted() -> None:
    assert rule_of(state("m.room.encryption", {"algorithm": MEGOLM})) is None


@pytest.mark.parametrize(
    ("event_type", "content"),
    [
        ("m.room.message", {"msgtype": "m.text", "body": "hello"}),
        ("m.reaction", {"m.relates_to": {"rel_type": "m.annotation", "key": "👍"}}),
        ("m.sticker", {"body": "cat", "url": "mxc://x/y"}),
        ("m.call.invite", {"call_id": "1"}),
        ("org.example.custom", {}),
    ],
)
def test_plaintext_is_refused_in_encrypted_rooms(event_type: str, content: dict[str, Any]) -> None:
    assert rule_of(message(event_type, content)) == "plaintext_forbidden"


def test_fake_encrypted_events_are_refused() -> None:
    assert rule_of(message("m.room.encrypted", {**ENCRYPTED, "algorithm": "x"})) == (
        "encryption_required"
    )
    assert rule_of(message("m.room.encrypted", {"algorithm": MEGOLM})) == "ciphertext_malformed"
    assert rule_of(message("m.room.encrypted", {**ENCRYPTED, "body": "hi"})) == "field_forbidden"


def test_encrypted_messages_and_redactions_pass() -> None:
    assert rule_of(message("m.room.encrypted", ENCRYPTED)) is None
    assert rule_of(message("m.room.redaction", {"redacts": "$e"})) is None


def test_nothing_is_sent_in_a_room_without_megolm() -> None:
    plain_room = RoomFacts(None, frozenset({A}))
    assert rule_of(message("m.room.encrypted", ENCRYPTED), plain_room) == "room_not_encrypted"
    # state can still be set: that is how a room gets created, encryption included
    assert rule_of(state("m.room.encryption", {"algorithm": MEGOLM}), plain_room) is None


# Join rules, guests, history


@pytest.mark.parametrize("rule", ["public", "knock", "knock_restricted", "private", None])
def test_only_invite_only_join_rules(rule: str | None) -> None:
    assert rule_of(state("m.room.join_rules", {"join_rule": rule})) == "join_rule_forbidden"


@pytest.mark.parametrize("rule", ["invite", "restricted"])
def test_invite_and_restricted_join_rules_pass(rule: str) -> None:
    assert rule_of(state("m.room.join_rules", {"join_rule": rule})) is None


def test_guest_access_must_be_forbidden() -> None:
    assert rule_of(state("m.room.guest_access", {"guest_access": "can_join"})) == (
        "guest_access_forbidden"
    )
    assert rule_of(state("m.room.guest_access", {"guest_access": "forbidden"})) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("world_readable", "history_visibility_forbidden"), ("shared", None), ("joined", None)],
)
def test_history_is_never_world_readable(value: str, expected: str | None) -> None:
    assert rule_of(state("m.room.history_visibility", {"history_visibility": value})) == expected


# Patient identifiers


@pytest.mark.parametrize(
    "event",
    [
        state("m.room.name", {"name": f"Patient {NIR}"}),
        state("m.room.topic", {"topic": "suivi", "m.topic": [{"body": f"NIR {NIR}"}]}),
        state("m.room.canonical_alias", {"alias": f"#p{NIR}:{A}"}),
        state("m.room.canonical_alias", {"alias": f"#ok:{A}", "alt_aliases": [f"#{NIR}:{A}"]}),
        message("m.room.redaction", {"redacts": "$e", "reason": f"wrong patient {NIR}"}),
    ],
)
def test_patient_identifiers_are_refused_where_matrix_does_not_encrypt(event: EventFacts) -> None:
    refusal = check_event_in_room(event, GOOD_ROOM, ALLOW)
    assert refusal is not None and refusal.rule == "patient_identifier"
    assert NIR not in refusal.message  # never repeated back


def test_pseudonymous_names_pass() -> None:
    assert rule_of(state("m.room.name", {"name": "Cas 2024-117 cardio (RPPS 10101234567)"})) is None


def test_configured_patterns_apply_to_names() -> None:
    ipp = NamedPattern("IPP", re.compile(r"IPP ?[0-9]{8}"))
    refusal = check_event(state("m.room.name", {"name": "IPP 12345678"}), ALLOW, (ipp,))
    assert refusal is not None and "IPP" in refusal.english


def test_aliases_are_scanned_without_the_server_part() -> None:
    assert check_alias(f"#case{NIR}:{A}") is not None
    assert check_alias("#case-117:localhost:8481") is None


# Room state summary


def test_room_facts_collect_encryption_creators_and_members() -> None:
    facts = room_facts(
        [
            state("m.room.create", {"additional_creators": [BOB]}, ALICE),
            state("m.room.encryption", {"algorithm": MEGOLM}),
            state("m.room.member", {"membership": "join"}, ALICE, ALICE),
            state("m.room.member", {"membership": "invite"}, ALICE, CAROL),
            state("m.room.member", {"membership": "leave"}, ALICE, "@dave:elsewhere.org"),
        ]
    )
    assert facts == RoomFacts(MEGOLM, frozenset({A, B, C}))


# Room creation


def creation_rule(request: dict[str, Any]) -> str | None:
    refusal = check_room_creation(request, ALICE, ALLOW)
    return None if refusal is None else refusal.rule


def test_a_plain_private_room_request_is_accepted_and_secured() -> None:
    request: dict[str, Any] = {"preset": "private_chat", "name": "Cas 117", "invite": [BOB]}
    assert creation_rule(request) is None
    added = {entry["type"]: entry["content"] for entry in secure_initial_state(request)}
    assert added == {
        "m.room.encryption": {"algorithm": MEGOLM},
        "m.room.guest_access": {"guest_access": "forbidden"},
    }


def test_secure_defaults_do_not_override_what_the_client_sent() -> None:
    request = {
        "initial_state": [
            {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}},
            {"type": "m.room.guest_access", "content": {"guest_access": "forbidden"}},
        ]
    }
    assert secure_initial_state(request) == []


@pytest.mark.parametrize(
    ("request_body", "expected"),
    [
        ({"preset": "public_chat"}, "join_rule_forbidden"),
        ({"visibility": "public"}, "directory_forbidden"),
        ({}, None),  # no preset, private visibility: private_chat
        (
            {
                "preset": "public_chat",
                "initial_state": [
                    {"type": "m.room.join_rules", "content": {"join_rule": "invite"}}
                ],
            },
            None,
        ),
        (
            {"initial_state": [{"type": "m.room.encryption", "content": {"algorithm": "none"}}]},
            "encryption_required",
        ),
        ({"initial_state": [{"type": "m.room.encryption", "content": {}}]}, "encryption_required"),
        (
            {
                "initial_state": [
                    {"type": "m.room.guest_access", "content": {"guest_access": "can_join"}}
                ]
            },
            "guest_access_forbidden",
        ),
        (
            {
                "initial_state": [
                    {
                        "type": "m.room.history_visibility",
                        "content": {"history_visibility": "world_readable"},
                    }
                ]
            },
            "history_visibility_forbidden",
        ),
        ({"name": f"Patient {NIR}"}, "patient_identifier"),
        ({"topic": NIR}, "patient_identifier"),
        ({"room_alias_name": f"p{NIR}"}, "patient_identifier"),
        ({"invite": [BOB, CAROL]}, "server_not_allowed"),
        (
            {"invite_3pid": [{"medium": "email", "address": "x@y.fr"}]},
            "third_party_invite_forbidden",
        ),
        ({"initial_state": "not a list", "name": "ok"}, None),  # Synapse itself rejects it
    ],
)
def test_room_creation_requests(request_body: dict[str, Any], expected: str | None) -> None:
    assert creation_rule(request_body) == expected


def test_synapses_own_dummy_event_passes_only_empty() -> None:
    """Synapse sends `org.matrix.dummy_event` by itself to merge forward extremities: refusing
    it would let them pile up. It carries nothing, and must stay that way."""
    from bridge.guard.messages import DUMMY_EVENT, check_message

    assert check_message(DUMMY_EVENT, {}, ()) is None
    refusal = check_message(DUMMY_EVENT, {"body": "Mme X"}, ())
    assert refusal is not None and refusal.rule == "field_forbidden"
