"""The identity-reset pieces that need no homeserver: the trust file shared by the bot and
the operator's commands, the reading of ``!identity`` commands, the fixed texts, and the
operator's commands on a store with no bot running."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from bot.cli import bot_app
from bot.crypto.keyfiles import MAX_VOUCHERS_PER_USER, PinStore
from bot.identity.texts import (
    CONFIRMED,
    NOTHING_PENDING,
    REFUSED,
    Request,
    classify,
    confirm_code,
    explain,
    reset_code,
)

ALICE = "@alice:hs"
BOB = "@bob:hs"


def test_a_change_made_by_another_process_is_seen_and_names_the_users_to_judge_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "pins.json"
    bot = PinStore(path)
    bot.pin(ALICE, "K1")
    bot.pin(BOB, "B1")
    bot.flag_change(ALICE, "K2")
    assert bot.refresh() == set()  # its own writes are not news

    operator = PinStore(path)
    assert operator.accept(ALICE) == "K2"
    os.utime(path, ns=(1, 1))  # even if the clock did not move
    assert bot.refresh() == {ALICE}
    assert bot.get(ALICE) == "K2" and bot.changed() == {}
    assert bot.get(BOB) == "B1"


def test_the_bot_does_not_undo_an_operators_decision_when_it_writes_next(tmp_path: Path) -> None:
    path = tmp_path / "pins.json"
    bot = PinStore(path)
    bot.pin(ALICE, "K1")
    bot.flag_change(ALICE, "K2")
    PinStore(path).forget(ALICE)  # the operator, while the bot runs
    bot.pin(BOB, "B1")  # the bot's next write re-reads first
    again = PinStore(path)
    assert again.get(ALICE) is None and ALICE not in again.changed()
    assert again.get(BOB) == "B1"


def test_pending_resets_are_listed_oldest_first_with_their_keys(tmp_path: Path) -> None:
    pins = PinStore(tmp_path / "pins.json")
    pins.pin(ALICE, "A1")
    pins.pin(BOB, "B1")
    pins.flag_change(BOB, "B2")
    pins.flag_change(ALICE, "A2")
    pending = pins.pending()
    assert [(p.user_id, p.pinned, p.seen) for p in pending] == [
        (BOB, "B1", "B2"),
        (ALICE, "A1", "A2"),
    ]
    assert all(p.since_ms > 0 for p in pending)
    assert pins.accept(ALICE) == "A2" and pins.accept(ALICE) is None
    assert [p.user_id for p in pins.pending()] == [BOB]


def test_only_devices_of_the_pinned_identity_vouch_and_a_new_pin_drops_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "pins.json"
    pins = PinStore(path)
    pins.pin(ALICE, "K1")
    pins.vouch(ALICE, "CURVE-OLD")
    assert pins.vouches(ALICE, "CURVE-OLD")
    assert not pins.vouches(ALICE, "CURVE-NEW") and not pins.vouches(ALICE, None)
    assert not pins.vouches(BOB, "CURVE-OLD")  # another user's device vouches for nobody
    assert PinStore(path).vouches(ALICE, "CURVE-OLD")  # kept on disk
    pins.flag_change(ALICE, "K2")
    assert pins.vouches(ALICE, "CURVE-OLD")  # still the pinned identity's device
    pins.accept(ALICE)
    assert not pins.vouches(ALICE, "CURVE-OLD")  # the new identity starts afresh
    for n in range(MAX_VOUCHERS_PER_USER + 5):
        pins.vouch(BOB, f"C{n}")
    assert not pins.vouches(BOB, "C0") and pins.vouches(BOB, f"C{MAX_VOUCHERS_PER_USER + 4}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lock = path.with_name(path.name + ".lock")  # bot and operator take turns on it
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600


def test_an_old_trust_file_without_the_new_sections_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "pins.json"
    path.write_text(json.dumps({"pinned": {ALICE: "K1"}, "changed": {ALICE: "K2"}}))
    pins = PinStore(path)
    assert pins.get(ALICE) == "K1"
    assert [(p.user_id, p.since_ms) for p in pins.pending()] == [(ALICE, 0)]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("hello", Request.NOT_A_COMMAND),
        ("", Request.NOT_A_COMMAND),
        ("!find cardio", Request.OTHER_COMMAND),
        ("!identityconfirm", Request.OTHER_COMMAND),
        ("!identity", Request.IDENTITY),
        ("!IDENTITY status", Request.IDENTITY),
        ("  !identity   Confirm  ", Request.CONFIRM),
        ("!identity confirm\nplease", Request.CONFIRM),
    ],
)
def test_identity_commands_are_recognised(body: str, expected: Request) -> None:
    assert classify(body) is expected


def test_the_confirmation_code_names_one_new_key() -> None:
    code = reset_code("newMasterKeyBase64")
    assert len(code) == 6 and code == code.upper() and code == reset_code("newMasterKeyBase64")
    assert reset_code("anotherKey") != code
    assert confirm_code(f"!identity confirm {code.lower()}") == code
    assert confirm_code("!identity confirm") is None
    assert f"!identity confirm {code}" in explain(code)


def test_identity_texts_are_bilingual_and_carry_no_answer() -> None:
    for text in (explain("ABC123"), CONFIRMED, REFUSED, NOTHING_PENDING):
        assert "identit" in text.lower()
        french, english = text.split("\n\n")
        assert any(w in french for w in ("Votre", "Cette", "Merci"))
        assert any(w in english for w in ("Your", "This", "Thank"))
    assert "administrat" in explain("ABC123")


def _config(tmp_path: Path) -> Path:
    (tmp_path / "pw").write_text("not-used-here")
    (tmp_path / "pw").chmod(0o600)
    data = {
        "homeserver_url": "http://127.0.0.1:9",
        "user_id": "@bot:hs",
        "password_file": "pw",
        "store_dir": "store",
        "pickle_key_file": "pickle-key",
        "member_servers": ["hs"],
    }
    path = tmp_path / "bot.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_operator_commands_work_on_a_stopped_bot_and_refuse_bad_input(tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    store = tmp_path / "store"
    store.mkdir(mode=0o700)
    pins = PinStore(store / "trusted_identities.json")
    pins.pin(ALICE, "K1")
    pins.flag_change(ALICE, "K2")
    cli = CliRunner()
    assert cli.invoke(bot_app, ["init", "--config", config]).exit_code == 0  # a deployed bot

    listed = cli.invoke(bot_app, ["pending-resets", "--config", config, "--json"])
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.output)["pending_resets"]
    assert (row["user_id"], row["pinned_master_key"], row["new_master_key"]) == (ALICE, "K1", "K2")

    bad = cli.invoke(bot_app, ["accept-identity", "--config", config, "alice"])
    assert bad.exit_code == 2 and "not a Matrix ID" in bad.output
    unknown = cli.invoke(bot_app, ["accept-identity", "--config", config, BOB])
    assert unknown.exit_code == 1 and "No pending identity reset" in unknown.output

    accepted = cli.invoke(bot_app, ["accept-identity", "--config", config, ALICE])
    assert accepted.exit_code == 0, accepted.output
    assert PinStore(store / "trusted_identities.json").get(ALICE) == "K2"
    empty = cli.invoke(bot_app, ["pending-resets", "--config", config])
    assert empty.exit_code == 0 and "No pending identity reset" in empty.output
    audit = cli.invoke(bot_app, ["audit", "--config", config, "--json"])
    assert audit.exit_code == 0, audit.output
    (line,) = json.loads(audit.output)["audit"]
    assert (line["sender"], line["command"], line["outcome"]) == (
        ALICE,
        "identity-reset",
        "accepted-by-operator",
    )
    text = cli.invoke(bot_app, ["audit", "--config", config])
    assert "accepted-by-operator" in text.output
    assert stat.S_IMODE((store / "bot.db").stat().st_mode) == 0o600


def test_an_operator_decision_is_not_applied_when_the_audit_cannot_be_written(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    data = yaml.safe_load(config.read_text())
    data["database_url"] = "postgresql+asyncpg://nobody@127.0.0.1:1/bot"
    config.write_text(yaml.safe_dump(data))
    store = tmp_path / "store"
    store.mkdir(mode=0o700)
    PinStore(store / "trusted_identities.json").pin(ALICE, "K1")
    PinStore(store / "trusted_identities.json").flag_change(ALICE, "K2")
    result = CliRunner().invoke(bot_app, ["accept-identity", "--config", str(config), ALICE])
    assert result.exit_code == 1 and "nothing changed" in result.output, result.output
    assert PinStore(store / "trusted_identities.json").get(ALICE) == "K1"
