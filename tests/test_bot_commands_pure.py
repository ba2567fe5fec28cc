"""The commands' pure core: tokenising, the registry and its help, argument parsing,
permissions, labels and the case-room body. No I/O."""

from __future__ import annotations

from typing import Any

import pytest

from bot.bridge_client import DirectoryUnavailable, parse_search_response
from bot.cases.lifetime import lifetime_topic
from bot.commands.builtin import default_registry
from bot.commands.context import CommandSettings
from bot.commands.help import render_help
from bot.commands.parsing import ArgumentError, parse_command_line, tokenize
from bot.commands.policy import (
    MatrixRef,
    RegisterRef,
    check_label,
    may_run,
    parse_case_new,
    parse_invitees,
    parse_query,
    parse_who,
)
from bot.commands.registry import Command, Found, Incomplete, Permission, Registry, Scope, Unknown
from bot.commands.rooms import build_case_room_body, matrix_to_link
from bot.expiry.policy import PURGE_MARGIN_MS
from bot.ids import RoomId, UserId
from bot.store import CaseRoom
from bridge.guard.identifiers import find_patient_identifier
from tests.test_guard_identifiers import DISGUISED

SETTINGS = CommandSettings(
    default_ttl_seconds=7 * 86400,
    min_ttl_seconds=60,
    max_ttl_seconds=28 * 86400,
    member_servers=frozenset({"hs-a.test", "hs-b.test:8448"}),
    max_invitees=3,
)
ALICE = UserId("@alice:hs-a.test")
BOB = UserId("@bob:hs-b.test:8448")
# A NIR with a valid key (guard's rules): 1 85 05 78 006 084, key 97 - n mod 97.
NIR13 = "1850578006084"
NIR = NIR13 + f"{97 - int(NIR13) % 97:02d}"


# -- tokenising ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("case new genou", ["case", "new", "genou"]),
        ('case new "genou droit" @a:b', ["case", "new", "genou droit", "@a:b"]),
        ("case new “genou droit”", ["case", "new", "genou droit"]),
        ("case new «genou droit»", ["case", "new", "genou droit"]),
        ("case new 'lit 12", ["case", "new", "lit 12"]),  # unterminated: runs to the end
        ("find l'hôpital  nord", ["find", "l'hôpital", "nord"]),  # apostrophe in a word
        ("find\u00a0cardio\tlyon", ["find", "cardio", "lyon"]),
        ('find ""', ["find", ""]),
        ("   ", []),
    ],
)
def test_tokenize_tolerates_quotes_and_spaces(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


def test_only_messages_starting_with_the_prefix_are_commands() -> None:
    assert parse_command_line("hello !help") is None
    assert parse_command_line("") is None
    line = parse_command_line("  !find cardio\nsecond line ignored")
    assert line is not None and line.words == ("find", "cardio")
    bare = parse_command_line("!")
    assert bare is not None and bare.words == ()


# -- registry and help ------------------------------------------------------------------


def test_registry_resolves_longest_path_case_insensitively() -> None:
    registry = default_registry()
    found = registry.resolve(["Case", "NEW", "x", "@a:b"])
    assert isinstance(found, Found)
    assert found.command.name == "case new" and found.args == ("x", "@a:b")
    alias = registry.resolve(["aide"])
    assert isinstance(alias, Found) and alias.command.name == "help"
    incomplete = registry.resolve(["case", "reopen"])
    assert isinstance(incomplete, Incomplete)
    assert {c.name for c in incomplete.commands} == {"case new", "case invite", "case close"}
    assert registry.resolve(["frobnicate"]) == Unknown("frobnicate")
    assert registry.resolve([]) == Unknown("")


def test_registry_refuses_duplicate_or_badly_named_commands() -> None:
    registry = default_registry()
    find = registry.resolve(["find"])
    assert isinstance(find, Found)
    with pytest.raises(ValueError, match="declared twice"):
        registry.add(find.command)
    with pytest.raises(ValueError, match="lower-case"):
        Registry().add(_command(("Find",)))


def _command(path: tuple[str, ...]) -> Command[None]:
    async def run(invocation: Any, args: None) -> None:
        return None

    return Command(
        path=path,
        usage="!x",
        help_fr="fr",
        help_en="en",
        examples=(),
        permission=Permission.MEMBER,
        scope=Scope.ANYWHERE,
        rerun_if_interrupted=True,
        parse=lambda args, settings: None,
        run=run,
    )


def test_help_is_generated_from_every_declaration_in_both_languages() -> None:
    registry = default_registry()
    reply = render_help(registry.commands)
    assert reply.html is not None
    for command in registry.commands:
        assert command.usage in reply.text
        assert command.help_fr in reply.text and command.help_en in reply.text
        assert command.examples, f"{command.name} declares no example"
        for example in command.examples:
            assert example in reply.text
    assert "réservé à qui l'a ouverte" in reply.text  # permissions come from declarations
    assert "<code>!case new &lt;label&gt; [who ...] [ttl=&lt;duration&gt;]</code>" in reply.html
    assert "<script" not in reply.html


def test_every_example_parses_with_its_own_command() -> None:
    registry = default_registry()
    for command in registry.commands:
        for example in command.examples:
            line = parse_command_line(example)
            assert line is not None
            found = registry.resolve(line.words)
            assert isinstance(found, Found) and found.command is command, example
            command.parse(found.args, SETTINGS)


# -- arguments ----------------------------------------------------------------------------


def test_case_new_label_runs_until_the_first_invitee() -> None:
    args = parse_case_new(
        ["suivi", "genou", "@bob:hs-b.test:8448", "10001234567", "ttl=2d"], SETTINGS
    )
    assert args.label == "suivi genou"
    assert args.invitees == (MatrixRef(BOB), RegisterRef("10001234567"))
    assert args.ttl_seconds == 2 * 86400
    assert parse_case_new(["x"], SETTINGS).ttl_seconds == SETTINGS.default_ttl_seconds
    assert parse_case_new(["x", "ttl=1h", "@bob:hs-b.test:8448"], SETTINGS).invitees == (
        MatrixRef(BOB),
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "label is missing"),
        (["ttl=1d"], "label is missing"),
        (["x", "@bob:hs-b.test", "genou"], "neither a Matrix ID"),
        (["x", "@not an id"], "not a valid Matrix ID"),
        (["x", "ttl=1d", "ttl=2d"], "given twice"),
        (["x", "ttl=soon"], "not a duration"),
        (["x", "ttl=10s"], r"outside the federation's bounds \(1m to 4w\)"),
        (["x", "ttl=5w"], r"outside the federation's bounds"),
        (["x", "@a:hs-a.test", "@b:hs-a.test", "@c:hs-a.test", "@d:hs-a.test"], "At most 3"),
    ],
)
def test_case_new_refusals_explain_themselves(args: list[str], message: str) -> None:
    with pytest.raises(ArgumentError, match=message):
        parse_case_new(args, SETTINGS)


def test_invitees_and_query_parsing() -> None:
    assert parse_invitees(["@bob:hs-b.test:8448", "@bob:hs-b.test:8448"], SETTINGS) == (
        MatrixRef(BOB),
    )
    with pytest.raises(ArgumentError, match="Whom"):
        parse_invitees([], SETTINGS)
    assert parse_who("123456789") == RegisterRef("123456789")  # ADELI
    assert parse_who("@x:[::1]:8448") == MatrixRef(UserId("@x:[::1]:8448"))
    assert parse_query(["cardio", "lyon"], SETTINGS) == "cardio lyon"
    with pytest.raises(ArgumentError, match="What should I search"):
        parse_query([], SETTINGS)
    with pytest.raises(ArgumentError, match="too long"):
        parse_query(["x" * 201], SETTINGS)


# -- labels and permissions ---------------------------------------------------------------


def test_labels_with_a_patient_identifier_are_refused_without_repeating_it() -> None:
    assert check_label("  genou   droit ", find_patient_identifier) == "genou droit"
    spaced = " ".join([NIR[0], NIR[1:3], NIR[3:5], NIR[5:7], NIR[7:10], NIR[10:13], NIR[13:]])
    for label in (f"patient {NIR}", f"cas {spaced}"):
        with pytest.raises(ArgumentError, match="patient identifier") as excinfo:
            check_label(label, find_patient_identifier)
        assert NIR not in excinfo.value.message and spaced not in excinfo.value.message
    # An RPPS number is not a patient identifier.
    assert check_label("avis 10001234567", find_patient_identifier) == "avis 10001234567"
    with pytest.raises(ArgumentError, match="too long"):
        check_label("x" * 65, find_patient_identifier)
    with pytest.raises(ArgumentError, match="invisible"):
        check_label("a\u200bb", find_patient_identifier)


@pytest.mark.parametrize("label", DISGUISED)
def test_labels_with_a_disguised_patient_identifier_are_refused(label: str) -> None:
    """The bot uses the guard's detector: every disguise the guard sees, `!case new` sees."""
    with pytest.raises(ArgumentError) as excinfo:
        check_label(label, find_patient_identifier)
    assert NIR not in excinfo.value.message


def test_permissions() -> None:
    case = CaseRoom(RoomId("!c:hs-a.test"), "x", ALICE, 60, created_ms=0)
    members = SETTINGS.member_servers
    common = {"member_servers": members}
    assert may_run(Permission.MEMBER, sender=BOB, case=None, sender_power=0, **common) is None
    outsider = UserId("@eve:evil.test")
    refusal = may_run(Permission.MEMBER, sender=outsider, case=None, sender_power=100, **common)
    assert refusal is not None and "member servers" in refusal
    manage = Permission.CASE_MANAGER
    assert may_run(manage, sender=ALICE, case=case, sender_power=0, **common) is None
    assert may_run(manage, sender=BOB, case=case, sender_power=100, **common) is None
    refusal = may_run(manage, sender=BOB, case=case, sender_power=50, **common)
    assert refusal is not None and "room admin" in refusal
    assert may_run(manage, sender=ALICE, case=None, sender_power=100, **common) is not None


# -- room body and link -------------------------------------------------------------------


def _state(body: dict[str, Any], event_type: str) -> dict[str, Any]:
    (content,) = [e["content"] for e in body["initial_state"] if e["type"] == event_type]
    assert isinstance(content, dict)
    return content


def test_case_room_body_protects_the_room_from_its_first_event() -> None:
    bot = UserId("@caducee:hs-a.test")
    body = build_case_room_body(label="genou", requester=BOB, bot=bot, ttl_seconds=3600)
    assert _state(body, "m.room.encryption") == {"algorithm": "m.megolm.v1.aes-sha2"}
    assert _state(body, "m.room.join_rules") == {"join_rule": "invite"}
    assert _state(body, "m.room.history_visibility") == {"history_visibility": "invited"}
    assert _state(body, "m.room.guest_access") == {"guest_access": "forbidden"}
    assert _state(body, "m.room.retention") == {"max_lifetime": 3_600_000 + PURGE_MARGIN_MS}
    # Room version 12: the creator (the bot) has unlimited power and must not be listed.
    assert body["room_version"] == "12"
    assert body["power_level_content_override"]["users"] == {BOB: 100}
    older = build_case_room_body(
        label="g", requester=BOB, bot=bot, ttl_seconds=60, room_version="11"
    )
    assert older["power_level_content_override"]["users"] == {bot: 100, BOB: 100}
    assert body["power_level_content_override"]["users_default"] == 0
    assert body["power_level_content_override"]["invite"] == 50
    assert body["visibility"] == "private"
    assert body["topic"] == lifetime_topic(3600)  # the lifetime, nothing about the patient
    assert body["name"] == "Cas · genou"
    assert body["preset"] != "trusted_private_chat"  # would make every invitee an admin


def test_matrix_to_link_names_the_room_and_via_servers_once() -> None:
    link = matrix_to_link(RoomId("!abc:hs-a.test"), ["hs-a.test", "hs-b.test:8448", ""])
    assert link == "https://matrix.to/#/!abc:hs-a.test?via=hs-a.test&via=hs-b.test:8448"


# -- directory answers ----------------------------------------------------------------


def test_directory_answer_is_read_and_malformed_ones_are_unavailable() -> None:
    page = parse_search_response(
        {
            "total": 12,
            "results": [
                {
                    "rpps": "10001234567",
                    "display_name": "Dr Marie Martin",
                    "profession": "Médecin",
                    "specialty": "Cardiologie",
                    "city": "Lyon",
                    "postcode": "69003",
                    "matrix_id": None,
                }
            ],
        }
    )
    assert page.total == 12 and page.results[0].matrix_id is None and not page.more
    capped = parse_search_response({"total": 500, "more": True, "results": []})
    assert capped.total == 500 and capped.more
    for bad in ([], {"results": "x"}, {"results": [{"display_name": "no rpps"}]}):
        with pytest.raises(DirectoryUnavailable):
            parse_search_response(bad)
