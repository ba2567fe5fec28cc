"""The bot's configuration loader and its pure policy helpers (notices, invites)."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from bot.cli import bot_app
from bot.config import ConfigError, TrustMode, load_config, parse_config
from bot.events import may_join
from bot.matrix.client import withheld_content
from bot.matrix.power_levels import is_privileged_creator, power_level_of
from bot.unreadable import (
    NO_KEY,
    SPEC_CODES,
    NoticeLimiter,
    Withheld,
    parse_withheld,
    unreadable_notice,
)
from tests.conftest import free_port

EXAMPLE = Path(__file__).parent.parent / "bot" / "example-config.yaml"


def good(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "homeserver_url": "http://127.0.0.1:8008/",
        "user_id": "@caducee:localhost:8481",
        "password": "a real password",
        "store_dir": "store",
        "pickle_key_file": "secrets/pickle",
        "member_servers": ["localhost:8482"],
    }
    data.update(changes)
    return data


def test_valid_config_resolves_paths_and_defaults(tmp_path: Path) -> None:
    config = parse_config(good(tmp_path, default_ttl="2d"), base_dir=tmp_path)
    assert config.homeserver_url == "http://127.0.0.1:8008"
    assert config.store_dir == tmp_path / "store"
    assert config.default_ttl == 2 * 86400
    assert config.trust is TrustMode.TOFU_CROSS_SIGNED
    assert config.effective_member_servers == {"localhost:8481", "localhost:8482"}
    assert config.effective_database_url.endswith("store/bot.db")
    assert "a real password" not in repr(config)


def test_pickle_key_file_is_generated_private_once(tmp_path: Path) -> None:
    config = parse_config(good(tmp_path), base_dir=tmp_path)
    key = config.resolve_pickle_key()
    path = tmp_path / "secrets" / "pickle"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config.resolve_pickle_key() == key and len(key) >= 40


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"password": None}, "password or password_file is required"),
        ({"pickle_key": "0123456789abcdef0123"}, "exactly one of pickle_key"),
        ({"pickle_key_file": None, "pickle_key": "short"}, "too short"),
        ({"user_id": "caducee"}, "not a Matrix user id"),
        ({"homeserver_url": "ftp://x"}, "not an http"),
        ({"min_ttl": "2d", "default_ttl": "1d"}, "min_ttl <= default_ttl"),
        ({"default_ttl": "soon"}, "not a duration"),
        ({"trust": "everyone"}, "trust"),
        ({"member_servers": []}, "member_servers"),
        ({"bridge_url": "http://127.0.0.1:1"}, "bridge_url needs bridge_token"),
        ({"pasword": "typo"}, "unknown field"),
        ({"password": "CHANGE_ME"}, "example value"),
    ],
)
def test_bad_config_is_refused_with_the_field_named(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    data = {k: v for k, v in good(tmp_path, **changes).items() if v is not None}
    with pytest.raises(ConfigError, match=message):
        parse_config(data, base_dir=tmp_path)


def test_shipped_example_is_refused_until_edited(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="example value"):
        load_config(EXAMPLE)
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(good(tmp_path), bridge_token="x" * 40)
    assert parse_config(data, base_dir=tmp_path).bridge_url == "http://127.0.0.1:8780"


def test_cli_reports_config_errors_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bot.yaml"
    path.write_text("homeserver_url: [unclosed\n")
    result = CliRunner().invoke(bot_app, ["check-config", "--config", str(path)])
    assert result.exit_code == 2
    assert "not valid YAML" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(bot_app, ["run", "--config", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "no such file" in result.output


def test_withheld_events_are_parsed_and_malformed_ones_ignored() -> None:
    source = {
        "type": "m.room_key.withheld",
        "sender": "@a:hs",
        "content": {"room_id": "!r:hs", "session_id": "S", "code": "m.unverified"},
    }
    parsed = parse_withheld(source)
    assert parsed is not None and (parsed.code, parsed.session_id) == ("m.unverified", "S")
    assert parse_withheld({**source, "type": "m.room_key"}) is None
    assert parse_withheld({**source, "content": {"room_id": "!r:hs"}}) is None
    assert parse_withheld("nope") is None


def test_notices_are_bilingual_and_specific() -> None:
    unverified = unreadable_notice("m.unverified")
    assert "vérifiée" in unverified and "verified" in unverified
    assert "never reached me" in unreadable_notice(NO_KEY)
    assert "no longer available" in unreadable_notice("m.unavailable")
    assert "not allowed" in unreadable_notice("m.unauthorised")


def test_every_spec_code_has_its_own_bilingual_text() -> None:
    generic = unreadable_notice("m.something.else")
    for code in SPEC_CODES:
        text = unreadable_notice(code)
        assert text != generic and "message" in text and "n'ai pas pu" in text, code


@pytest.mark.parametrize(
    "code",
    [
        "m.evil https://phish.example/login",
        "m.blacklisted ",
        "M.UNVERIFIED",
        "org.example.custom",
        "m.unverified\u202e",
        "<b>m.no_olm</b>",
        "",
    ],
)
def test_a_code_the_spec_does_not_define_is_never_echoed(code: str) -> None:
    text = unreadable_notice(code)
    assert text == unreadable_notice("m.something.else")
    if code.strip():
        assert code.strip() not in text
    assert "phish" not in text and "custom" not in text


def test_withheld_notice_applies_only_to_its_own_senders_session() -> None:
    notice = Withheld("@doc:hs", "!r:hs", "S", "m.unverified", sender_key="KEY")
    assert notice.applies_to("!r:hs", "@doc:hs", "KEY")
    assert not notice.applies_to("!r:hs", "@other:hs", "KEY")  # another user's notice
    assert not notice.applies_to("!r:hs", "@doc:hs", "OTHERKEY")  # another device's session
    assert not notice.applies_to("!elsewhere:hs", "@doc:hs", "KEY")  # another room
    keyless = Withheld("@doc:hs", "!r:hs", "S", "m.unverified")
    assert keyless.applies_to("!r:hs", "@doc:hs", "ANY")
    assert not keyless.applies_to("!r:hs", "@mallory:hs", "ANY")


def test_withheld_notice_with_a_malformed_sender_key_is_ignored() -> None:
    source = {
        "type": "m.room_key.withheld",
        "sender": "@a:hs",
        "content": {"room_id": "!r:hs", "session_id": "S", "code": "m.unverified"},
    }
    assert parse_withheld({**source, "content": {**source["content"], "sender_key": 5}}) is None
    parsed = parse_withheld({**source, "content": {**source["content"], "sender_key": "K"}})
    assert parsed is not None and parsed.sender_key == "K"


def test_notice_limiter_allows_one_per_room_and_sender_per_interval() -> None:
    limiter = NoticeLimiter(60, max_keys=2)
    assert limiter.allow("!r", "@a", 0)
    assert not limiter.allow("!r", "@a", 30)
    assert limiter.allow("!r", "@b", 30) and limiter.allow("!s", "@a", 30)
    assert limiter.allow("!r", "@a", 61)


def test_only_member_servers_may_invite_the_bot() -> None:
    members = frozenset({"localhost:8481", "hs.example"})
    assert may_join("@doc:localhost:8481", members)
    assert not may_join("@doc:localhost:8483", members)
    assert not may_join("@doc:evil.hs.example", members)
    assert not may_join("malformed", members)


def test_cli_says_when_the_homeserver_cannot_be_reached(tmp_path: Path) -> None:
    data = good(tmp_path, homeserver_url=f"http://127.0.0.1:{free_port()}")
    path = tmp_path / "bot.yaml"
    path.write_text(yaml.safe_dump(data))
    assert CliRunner().invoke(bot_app, ["init", "--config", str(path)]).exit_code == 0
    result = CliRunner().invoke(bot_app, ["run", "--config", str(path)])
    assert result.exit_code == 1, result.output
    assert "cannot reach the homeserver" in result.output and "Traceback" not in result.output


def test_run_never_creates_the_bots_database_init_does(tmp_path: Path) -> None:
    """A lost store (failed mount, wrong path) stops the bot instead of a bot that forgot
    its case rooms and expiries; `caducee bot init` is the one way to create it."""
    path = tmp_path / "bot.yaml"
    path.write_text(
        yaml.safe_dump(good(tmp_path, homeserver_url=f"http://127.0.0.1:{free_port()}"))
    )
    result = CliRunner().invoke(bot_app, ["run", "--config", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.startswith("Error: no bot database at ")
    assert "caducee bot init" in result.stderr
    assert not (tmp_path / "store" / "bot.db").exists()

    result = CliRunner().invoke(bot_app, ["init", "--config", str(path)])
    assert (result.exit_code, result.stdout.startswith("Created the bot's database")) == (0, True)
    assert stat.S_IMODE((tmp_path / "store" / "bot.db").stat().st_mode) == 0o600
    again = CliRunner().invoke(bot_app, ["init", "--config", str(path)])
    assert again.exit_code == 0 and "already there" in again.stdout

    (tmp_path / "store" / "bot.db").write_bytes(b"")  # emptied: no database either
    result = CliRunner().invoke(bot_app, ["run", "--config", str(path)])
    assert result.exit_code == 1 and "no bot database" in result.stderr


def test_power_levels_and_v12_creators() -> None:
    levels = {"users": {"@a:hs": 100}, "users_default": 5}
    assert power_level_of(levels, "@a:hs") == 100
    assert power_level_of(levels, "@b:hs") == 5
    assert power_level_of("garbage", "@b:hs") == 0
    create = {
        "sender": "@bot:hs",
        "content": {"room_version": "12", "additional_creators": ["@c:hs"]},
    }
    assert is_privileged_creator(create["content"], create, "@bot:hs")
    assert is_privileged_creator(create["content"], create, "@c:hs")
    assert not is_privileged_creator(create["content"], create, "@a:hs")
    old = {"sender": "@bot:hs", "content": {"room_version": "10"}}
    assert not is_privileged_creator(old["content"], old, "@bot:hs")


def test_withheld_notice_we_send_is_well_formed() -> None:
    content = withheld_content("!r:hs", "S", "K")
    parsed = parse_withheld(
        {"type": "m.room_key.withheld", "sender": "@bot:hs", "content": content}
    )
    assert parsed is not None and parsed.code == "m.unverified"


def test_run_with_a_database_that_cannot_be_reached_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bot.yaml"
    url = f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/bot"
    path.write_text(yaml.safe_dump(good(tmp_path, database_url=url)))
    for command in ("run", "init"):
        result = CliRunner().invoke(bot_app, [command, "--config", str(path)])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert result.stderr.startswith("Error: cannot open the bot database")


async def test_an_empty_database_is_no_bot_database_until_init(
    tmp_path: Path, store_url: str
) -> None:
    """On SQLite and PostgreSQL alike: a database without the bot's schema is refused by
    `run` (a wrong name, a lost volume) and made the bot's by `init`."""
    from bot.store import BotDatabase
    from bot.store.initialised import missing_database

    assert await missing_database(store_url) is not None
    database = await BotDatabase.open(store_url, create=True)  # what `caducee bot init` runs
    await database.close()
    assert await missing_database(store_url) is None
