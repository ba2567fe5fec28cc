"""The guard's wiring into Synapse: configuration, registered callbacks, answers.

Synapse's ModuleApi is a spec'd mock (it is the host, not the thing under test); the
events are real Synapse events, so the module reads them the way Synapse hands them.
"""

from __future__ import annotations

import inspect
from typing import Any
from unittest.mock import Mock

import pytest
from synapse.api.errors import cs_error
from synapse.api.room_versions import RoomVersions
from synapse.events import make_event_from_dict
from synapse.module_api import NOT_SPAM, EventBase, RoomAlias
from synapse.module_api.errors import Codes, ConfigError, SynapseError
from synapse.types import create_requester

from bridge.guard import CaduceeGuard, GuardConfig
from bridge.guard.allowlist import AllowList
from bridge.guard.identifiers import nir_key
from bridge.guard.module import RULE_FIELD
from bridge.guard.policy import MEGOLM
from tests.megolm_support import megolm_content
from tests.test_guard_outsiders_unit import module_api

A, B, C = "localhost:8481", "localhost:8482", "localhost:8483"
ALICE, BOB, CAROL = f"@alice:{A}", f"@bob:{B}", f"@carol:{C}"
ROOM = f"!room:{A}"
NIR = "2690599123456" + f"{nir_key('2690599123456'):02d}"

SPAM_CALLBACKS = {
    "check_event_for_spam",
    "check_media_file_for_spam",
    "user_may_invite",
    "federated_user_may_invite",
    "user_may_join_room",
    "user_may_create_room_alias",
    "user_may_publish_room",
    "user_may_send_3pid_invite",
}
RULES_CALLBACKS = {
    "check_event_allowed",
    "on_create_room",
    "check_visibility_can_be_modified",
    "check_threepid_can_be_invited",
}


def make_guard(config: dict[str, Any] | None = None) -> tuple[CaduceeGuard, Mock]:
    api = module_api(A)
    parsed = CaduceeGuard.parse_config(config or {"allowed_servers": [B]})
    return CaduceeGuard(parsed, api), api


def event(event_type: str, content: dict[str, Any], sender: str = ALICE, **extra: Any) -> EventBase:
    return make_event_from_dict(
        {
            "type": event_type,
            "sender": sender,
            "content": content,
            "room_id": ROOM,
            "hashes": {"sha256": "unchecked"},
            "origin_server_ts": 0,
            "prev_events": [],
            "auth_events": [],
            "depth": 1,
            **extra,
        },
        RoomVersions.V10,
    )


def room_state() -> dict[tuple[str, str], EventBase]:
    events = [
        event("m.room.create", {"room_version": "10"}, state_key=""),
        event("m.room.member", {"membership": "join"}, state_key=ALICE),
        event("m.room.encryption", {"algorithm": MEGOLM}, state_key=""),
    ]
    return {(e.type, e.get_state_key() or ""): e for e in events}


def human_error(code: Codes, fields: dict[str, Any]) -> str:
    """What a client reads: Synapse builds the body as cs_error(fixed message, code, **fields)."""
    return str(cs_error("Invites have been disabled on this server", code, **fields)["error"])


# Configuration


def test_parse_config_returns_a_frozen_config() -> None:
    config = CaduceeGuard.parse_config(
        {
            "allowed_servers": ["LOCALHOST:8482", "localhost:8482"],
            "identifier_patterns": [{"name": "IPP", "regex": "IPP[0-9]{8}"}],
        }
    )
    assert isinstance(config, GuardConfig)
    assert config.allowed_servers == (B,)
    assert [p.name for p in config.identifier_patterns] == ["IPP"]
    with pytest.raises(AttributeError):
        config.allowed_servers = ()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({}, ["allowed_servers", "required"]),
        ({"allowed_server": [B]}, ["allowed_server", "unknown key"]),
        ({"allowed_servers": B}, ["allowed_servers", "list"]),
        ({"allowed_servers": ["https://hs.org"]}, ["allowed_servers[0]", "server name"]),
        ({"allowed_servers": ["hs.org:99999"]}, ["allowed_servers[0]"]),
        (
            {"allowed_servers": [], "identifier_patterns": [{"name": "x", "regex": "("}]},
            ["identifier_patterns[0]", "does not compile"],
        ),
        (
            {"allowed_servers": [], "identifier_patterns": [{"name": "x", "regex": ".*"}]},
            ["identifier_patterns[0]", "empty text"],
        ),
        (
            {"allowed_servers": [], "identifier_patterns": [{"regex": "x"}]},
            ["identifier_patterns[0]", "'name'"],
        ),
        ({"allowed_servers": [], "allowed_servers_url": "ftp://x"}, ["allowed_servers_url"]),
    ],
)
def test_bad_config_is_refused_with_the_key_named(config: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        CaduceeGuard.parse_config(config)
    for word in words:
        assert word in caught.value.msg


def test_parse_config_refuses_a_non_mapping() -> None:
    with pytest.raises(ConfigError):
        CaduceeGuard.parse_config(["localhost:8482"])  # type: ignore[arg-type]


# Registration


def test_callbacks_are_registered_through_the_public_api() -> None:
    guard, api = make_guard()
    spam = api.register_spam_checker_callbacks.call_args.kwargs
    rules = api.register_third_party_rules_callbacks.call_args.kwargs
    assert set(spam) == SPAM_CALLBACKS
    assert set(rules) == RULES_CALLBACKS
    for callback in [*spam.values(), *rules.values()]:
        assert inspect.iscoroutinefunction(callback)
        assert callback.__self__ is guard


def test_callback_signatures_match_how_synapse_calls_them() -> None:
    guard, _ = make_guard()
    arity = {
        "check_event_for_spam": 1,
        "check_media_file_for_spam": 2,
        "user_may_invite": 3,
        "federated_user_may_invite": 1,
        "user_may_join_room": 3,
        "user_may_create_room_alias": 2,
        "user_may_publish_room": 2,
        "user_may_send_3pid_invite": 4,
        "check_event_allowed": 2,
        "on_create_room": 3,
        "check_visibility_can_be_modified": 3,
        "check_threepid_can_be_invited": 3,
    }
    for name, count in arity.items():
        assert len(inspect.signature(getattr(guard, name)).parameters) == count, name


def test_own_server_is_allowed_even_if_not_listed() -> None:
    guard, _ = make_guard({"allowed_servers": []})
    assert guard.allow_list.current == AllowList(A, frozenset({A}))


# check_event_allowed: the backstop for everyone


async def test_allowed_event_passes_unchanged() -> None:
    guard, _ = make_guard()
    encrypted = event("m.room.encrypted", megolm_content())
    assert await guard.check_event_allowed(encrypted, room_state()) == (True, None)


async def test_refusal_carries_a_human_reason_and_the_rule() -> None:
    guard, _ = make_guard()
    plaintext = event("m.room.message", {"msgtype": "m.text", "body": "hello"})
    with pytest.raises(SynapseError) as caught:
        await guard.check_event_allowed(plaintext, room_state())
    body = caught.value.error_dict(None)
    assert caught.value.code == 403
    assert body["errcode"] == Codes.FORBIDDEN
    assert "end-to-end encrypted" in body["error"] and "chiffrés" in body["error"]
    assert body[RULE_FIELD] == "plaintext_forbidden"


async def test_state_is_read_from_what_synapse_passes() -> None:
    guard, _ = make_guard()
    state = room_state()
    state[("m.room.member", CAROL)] = event(
        "m.room.member", {"membership": "invite"}, state_key=CAROL
    )
    encrypted = event("m.room.encrypted", megolm_content())
    with pytest.raises(SynapseError) as caught:
        await guard.check_event_allowed(encrypted, state)
    assert caught.value.error_dict(None)[RULE_FIELD] == "room_shared_with_outsider"


async def test_the_guard_fails_closed() -> None:
    guard, _ = make_guard()
    broken = Mock()
    type(broken).current = property(lambda _self: 1 / 0)
    guard.allow_list = broken
    encrypted = event("m.room.encrypted", megolm_content())
    with pytest.raises(SynapseError) as caught:
        await guard.check_event_allowed(encrypted, room_state())
    assert caught.value.error_dict(None)[RULE_FIELD] == "guard_error"
    assert await guard.user_may_invite(ALICE, BOB, ROOM) != NOT_SPAM


async def test_a_swapped_allow_list_takes_effect_at_once() -> None:
    guard, _ = make_guard()
    assert await guard.user_may_invite(ALICE, CAROL, ROOM) != NOT_SPAM
    guard.allow_list.replace([B, C])
    assert await guard.user_may_invite(ALICE, CAROL, ROOM) == NOT_SPAM


# Room creation


async def test_room_creation_is_secured_in_place() -> None:
    guard, _ = make_guard()
    request: dict[str, Any] = {"preset": "private_chat", "name": "Cas 117"}
    await guard.on_create_room(create_requester(ALICE), request, True)
    types = {entry["type"]: entry["content"] for entry in request["initial_state"]}
    assert types["m.room.encryption"] == {"algorithm": MEGOLM}
    assert types["m.room.guest_access"] == {"guest_access": "forbidden"}


async def test_room_creation_with_an_identifier_is_refused_for_admins_too() -> None:
    guard, _ = make_guard()
    with pytest.raises(SynapseError) as caught:
        await guard.on_create_room(create_requester(ALICE), {"name": f"M. X {NIR}"}, True)
    body = caught.value.error_dict(None)
    assert body[RULE_FIELD] == "patient_identifier" and NIR not in body["error"]


# Spam-checker answers: the reason replaces Synapse's fixed message


class UnreadableFile:
    async def write_chunks_to(self, callback: Any) -> None:
        callback(b"%PDF-1.7 ")
        raise OSError("disk gone")


async def test_a_media_file_that_cannot_be_read_is_refused() -> None:
    guard, _ = make_guard()
    answer = await guard.check_media_file_for_spam(UnreadableFile(), None)
    assert answer != NOT_SPAM and answer[1][RULE_FIELD] == "guard_error"


async def test_spam_checker_refusals_put_the_reason_in_the_error_field() -> None:
    guard, _ = make_guard()
    answer = await guard.user_may_invite(ALICE, CAROL, ROOM)
    assert answer != NOT_SPAM
    code, fields = answer
    assert code == Codes.FORBIDDEN
    assert C in human_error(code, fields) and fields[RULE_FIELD] == "server_not_allowed"


async def test_spam_checker_callbacks_allow_members() -> None:
    guard, _ = make_guard()
    assert await guard.user_may_invite(ALICE, BOB, ROOM) == NOT_SPAM
    assert await guard.user_may_join_room(ALICE, f"!r:{B}", True) == NOT_SPAM
    alias = RoomAlias.from_string(f"#case-117:{A}")
    assert await guard.user_may_create_room_alias(ALICE, alias) == NOT_SPAM


async def test_joins_to_rooms_of_outsiders_are_refused() -> None:
    guard, _ = make_guard()
    assert await guard.user_may_join_room(ALICE, f"!r:{C}", True) != NOT_SPAM


async def test_aliases_with_identifiers_are_refused() -> None:
    guard, _ = make_guard()
    alias = RoomAlias.from_string(f"#p{NIR}:{A}")
    assert await guard.user_may_create_room_alias(ALICE, alias) != NOT_SPAM


async def test_events_from_federation_are_judged_on_the_event_alone() -> None:
    guard, _ = make_guard()
    from_outsider = event("m.room.encrypted", megolm_content(), CAROL)
    from_member = event("m.room.encrypted", megolm_content(), BOB)
    plaintext_from_member = event("m.room.message", {"body": "x", "msgtype": "m.text"}, BOB)
    assert await guard.check_event_for_spam(from_member) == NOT_SPAM
    assert await guard.check_event_for_spam(from_outsider) != NOT_SPAM
    assert await guard.check_event_for_spam(plaintext_from_member) != NOT_SPAM
    custom_state = event("org.example.note", {"body": "Mme X, VIH+"}, BOB, state_key="")
    fake = event("m.room.encrypted", {"algorithm": MEGOLM, "ciphertext": "Mme X, VIH+"}, BOB)
    for smuggled in (custom_state, fake):
        answer = await guard.check_event_for_spam(smuggled)
        assert answer != NOT_SPAM and answer[1][RULE_FIELD] != "guard_error"


async def test_invitations_from_outsiders_over_federation_are_refused() -> None:
    guard, _ = make_guard()
    invite = event("m.room.member", {"membership": "invite"}, CAROL, state_key=ALICE)
    assert await guard.federated_user_may_invite(invite) != NOT_SPAM
    from_member = event("m.room.member", {"membership": "invite"}, BOB, state_key=ALICE)
    assert await guard.federated_user_may_invite(from_member) == NOT_SPAM


async def test_directory_and_third_party_invites_are_always_refused() -> None:
    guard, _ = make_guard()
    assert await guard.user_may_publish_room(ALICE, ROOM) != NOT_SPAM
    assert await guard.user_may_send_3pid_invite(ALICE, "email", "x@y.fr", ROOM) != NOT_SPAM
    assert await guard.check_visibility_can_be_modified(ROOM, room_state(), "public") is False
    assert await guard.check_visibility_can_be_modified(ROOM, room_state(), "private") is True
    assert await guard.check_threepid_can_be_invited("email", "x@y.fr", room_state()) is False
