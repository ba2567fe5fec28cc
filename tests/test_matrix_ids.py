"""Matrix server names and user IDs: the spec appendix's examples, and each caller's contract."""

from __future__ import annotations

import pytest

from bot.commands.parsing import ArgumentError
from bot.commands.policy import parse_who
from bot.ids import server_of as bot_server_of
from bridge.admin.model import AdminError
from bridge.admin.services import server_of as admin_server_of
from bridge.config import is_valid_server_name as config_is_valid
from bridge.guard.allowlist import is_valid_server_name as guard_is_valid
from bridge.guard.allowlist import server_of as guard_server_of
from bridge.guard.ids import is_valid_server_name, is_valid_user_id, server_part, user_id_server
from bridge.http.auth import server_of as auth_server_of

# The specification's own examples of server names (appendix "Server Name"), then ours.
VALID_SERVER_NAMES = [
    "matrix.org",
    "matrix.org:8888",
    "1.2.3.4",
    "1.2.3.4:1234",
    "[1234:5678::abcd]",
    "[1234:5678::abcd]:5678",
    "localhost:8481",
    "a",
    "Example.ORG",
    "[::1]:65535",
    "x" * 255,
]
INVALID_SERVER_NAMES = [
    "",
    "matrix.org:",
    "matrix.org:0",
    "matrix.org:65536",
    "matrix.org:123456",
    "matrix.org:abc",
    "[1234:5678::abcd",
    "[:]",
    "[" + "1" * 46 + "]",
    "[::g]",
    "exa mple.org",
    "example.org\n",
    "-example.org",
    "example.org.",
    "exämple.org",
    "x" * 256,
    "@alice:example.org",
]


@pytest.mark.parametrize("name", VALID_SERVER_NAMES)
def test_valid_server_names(name: str) -> None:
    assert is_valid_server_name(name)
    assert config_is_valid(name) and guard_is_valid(name)  # one definition, re-exported


@pytest.mark.parametrize("name", INVALID_SERVER_NAMES)
def test_invalid_server_names(name: str) -> None:
    assert not is_valid_server_name(name)
    assert not config_is_valid(name) and not guard_is_valid(name)


# The spec's user ID examples, the historical grammar (any printable ASCII but ":" in the
# localpart), and the 255-character bound.
VALID_USER_IDS = [
    "@alice:example.com",
    "@alice:localhost:8481",
    "@bob:[1234:5678::abcd]:5678",
    "@a.b_c=d-e/f+g:1.2.3.4",
    "@Alice!:example.com",
    "@x" + "a" * 240 + ":example.org",
]
INVALID_USER_IDS = [
    "alice:example.com",
    "@:example.com",
    "@alice",
    "@alice:",
    "@alice:exa mple.com",
    "@al ice:example.com",
    "@alicé:example.com",
    "@alice:example.com:0",
    "@x" + "a" * 250 + ":example.org",
    "!room:example.com",
]


@pytest.mark.parametrize("user_id", VALID_USER_IDS)
def test_valid_user_ids(user_id: str) -> None:
    assert is_valid_user_id(user_id)
    assert parse_who(user_id).user_id == user_id  # type: ignore[union-attr]


@pytest.mark.parametrize("user_id", INVALID_USER_IDS)
def test_invalid_user_ids(user_id: str) -> None:
    assert not is_valid_user_id(user_id)
    if user_id.startswith("@"):
        with pytest.raises(ArgumentError):
            parse_who(user_id)


# Each caller keeps its contract for what is not an ID: "" (bot), None (guard, bridge API) or an
# error (admin), and the guard compares servers lower-cased.
@pytest.mark.parametrize(
    ("matrix_id", "part", "bot", "guard", "auth"),
    [
        (
            "@a:localhost:8481",
            "localhost:8481",
            "localhost:8481",
            "localhost:8481",
            "localhost:8481",
        ),
        ("@a:Example.ORG", "Example.ORG", "Example.ORG", "example.org", "Example.ORG"),
        ("!room:example.org", "example.org", "example.org", "example.org", None),
        ("$event", None, "", None, None),
        ("@a:", None, "", None, None),
        ("@:example.org", "example.org", "example.org", "example.org", None),
        ("@a:bad host", "bad host", "bad host", "bad host", None),
    ],
)
def test_each_caller_keeps_its_contract(
    matrix_id: str, part: str | None, bot: str, guard: str | None, auth: str | None
) -> None:
    assert server_part(matrix_id) == part
    assert bot_server_of(matrix_id) == bot
    assert guard_server_of(matrix_id) == guard
    assert auth_server_of(matrix_id) == auth
    assert user_id_server(matrix_id) == auth


@pytest.mark.parametrize("matrix_id", ["alice:example.org", "@:example.org", "@alice", "@alice:"])
def test_admin_refuses_what_is_not_a_matrix_id(matrix_id: str) -> None:
    with pytest.raises(AdminError):
        admin_server_of(matrix_id)


def test_admin_takes_the_server_as_written() -> None:
    assert admin_server_of("@alice:Example.org:8448") == "Example.org:8448"
