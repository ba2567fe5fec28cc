"""A doctor resets their cryptographic identity: the bot explains, and they recover.

Element's own crypto (tests/element) against the real bot on real Synapse. The doctor has two
sessions: the one opened first (cross-signed by the identity the bot pinned, in Element's
default mode) and a new one that resets the identity, as Element does after a reinstall
without the recovery key. The bot must

1. answer the new session's command with a bilingual explanation that session can read (not
   "Unable to decrypt", not silence), and run no command while the reset is pending;
2. refuse ``!identity confirm`` from the new session (the homeserver could have made it);
3. accept it from the earlier session, after which the new session reads ordinary answers;
4. write each step to its audit log.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from nio import MegolmEvent
from typer.testing import CliRunner, Result

from bot.cli import bot_app
from bot.crypto.bootstrap import ensure_cross_signed
from bot.identity.texts import AUDIT_COMMAND, Outcome
from bot.ids import RoomId
from bot.matrix.homeserver import NioJson
from bot.runner import BotRunner
from bot.store import BotDatabase, BotStore
from deploy.local.federation import Homeserver
from tests.element_driver import ElementClient, ElementClientError, installation_problem
from tests.matrix_helpers import Doctor, eventually, unique
from tests.test_bot_e2e_lifecycle import config_file

pytestmark = pytest.mark.slow


@pytest.fixture
async def clients() -> AsyncIterator[list[ElementClient]]:
    problem = installation_problem()
    if problem is not None:
        pytest.fail(f"the Element test client cannot run: {problem}")
    started: list[ElementClient] = []
    yield started
    for client in started:
        await client.close()


async def _message(
    reader: ElementClient, room_id: str, sender: str, wanted: Callable[[str], bool]
) -> dict[str, Any]:
    """The next message from `sender` that `reader` decrypts and whose body is `wanted`.

    Earlier messages of the room (which a new session cannot read) are skipped; a wanted
    answer that never becomes readable times the test out.
    """
    for _ in range(20):
        got = await reader.wait_for_message(room_id=room_id, sender=sender, utd_wait_ms=3_000)
        if got["decrypted"] and wanted(got["body"]):
            return got
    raise AssertionError(f"no readable matching message from {sender}")


async def _reset_identity(client: ElementClient) -> None:
    """New cross-signing keys, published, and this (new) device signed by them.

    The test client's own readiness flag stays false after a reset without secret storage;
    what matters to the bot is what the server publishes, checked here.
    """
    try:
        await client.request("cross_sign", reset=True, timeout_ms=15_000)
    except ElementClientError as exc:
        if exc.code != "CROSS_SIGNING_FAILED":
            raise
    status = await client.status()
    assert status["device_signed_on_server"], status


async def test_a_doctor_who_resets_their_identity_is_told_and_recovers_from_an_old_session(
    bot_a: BotRunner, hs_a: Homeserver, clients: list[ElementClient]
) -> None:
    bot = bot_a.user_id
    user = await hs_a.register_user(unique("reset"), secrets.token_urlsafe(16))
    old = await ElementClient.start()
    clients.append(old)
    await old.login(
        hs_a.client_url,
        user.user_id,
        user.password,
        access_token=user.access_token,
        device_id=user.device_id,
        isolation="all",  # Element's default: it keeps sending after the reset elsewhere
    )
    before = await old.cross_sign()
    room_id = await old.create_dm(bot)
    await old.send(room_id, "!help")
    answer = await _message(old, room_id, bot, lambda b: "!find" in b)
    assert answer["shield_colour"] == "NONE", answer

    new = await ElementClient.start()
    clients.append(new)
    await new.login(hs_a.client_url, user.user_id, user.password, isolation="all")
    await _reset_identity(new)
    pins = bot_a.identity_gate.pins if bot_a.identity_gate is not None else None
    assert pins is not None

    async def pending() -> str | None:  # what `caducee bot pending-resets` lists
        return pins.changed().get(user.user_id)

    seen = await eventually(pending, timeout=30)
    assert seen != before["master_key"].removeprefix("ed25519:") and seen != pins.get(user.user_id)

    await new.send(room_id, "!help")
    explained = await _message(new, room_id, bot, lambda b: "identity" in b)
    body = explained["body"]
    assert "Votre identité de chiffrement a changé" in body, body
    assert "Your encryption identity has changed" in body, body
    assert "!find" not in body  # the command did not run
    match = re.search(r"!identity confirm ([0-9A-F]{6})", body)
    assert match is not None, body
    confirm = match.group(0)
    assert explained["shield_colour"] == "NONE", explained  # from the bot's signed device

    await new.send(room_id, confirm)
    refused = await _message(new, room_id, bot, lambda b: "cannot confirm" in b)
    assert "ne peut pas confirmer" in refused["body"]
    # The earlier session reads all of it too (the explanation, then the refusal).
    await _message(old, room_id, bot, lambda b: "identity has changed" in b)
    await _message(old, room_id, bot, lambda b: "cannot confirm" in b)

    await old.send(room_id, "!identity confirm 000000")  # a wrong (or replayed) code
    again = await old.wait_for_message(room_id=room_id, sender=bot)  # the very next one
    assert again["decrypted"] and "identity has changed" in again["body"], again
    assert confirm in again["body"] and "accepted" not in again["body"]
    await old.send(room_id, confirm)
    confirmed = await _message(old, room_id, bot, lambda b: "accepted" in b)
    assert "acceptée" in confirmed["body"]

    await new.send(room_id, "!help")
    recovered = await _message(new, room_id, bot, lambda b: "!find" in b)
    assert (recovered["shield_colour"], recovered["shield_reason"]) == ("NONE", None), recovered

    outcomes = await _audit_outcomes(bot_a, user.user_id)
    assert outcomes == [
        Outcome.PENDING,
        Outcome.CONFIRM_REFUSED,
        Outcome.CONFIRMED_BY_SESSION,
    ], outcomes


async def _cli(*args: str) -> Result:
    """`caducee bot ...` as an operator types it (in a thread: it runs its own event loop)."""
    return await asyncio.to_thread(CliRunner().invoke, bot_app, list(args))


async def test_an_operator_sees_the_pending_reset_and_accepts_it_while_the_bot_runs(
    bot_a: BotRunner, hs_b: Homeserver, tmp_path: Path
) -> None:
    """No earlier session left (a lost phone): the doctor is told, the operator lists the
    pending reset, accepts it after checking with the doctor, and the running bot follows."""
    config = str(config_file(bot_a.config))
    doctor = await Doctor.create(hs_b, tmp_path, name="lostphone")
    try:
        room_id = await doctor.dm(bot_a.user_id)
        await doctor.send(room_id, "!help")
        await doctor.wait_for_text(bot_a.user_id, lambda b: "!find" in b)
        await ensure_cross_signed(  # new keys, from the homeserver's point of view a reset
            NioJson(doctor.client),
            doctor.user_id,
            str(doctor.client.device_id),
            doctor.store_dir / "cs-after-reset.json",
            doctor.password,
        )
        gate = bot_a.identity_gate
        assert gate is not None

        async def pending() -> str | None:
            return gate.pins.changed().get(doctor.user_id)

        await eventually(pending, timeout=30)
        mark = len(doctor.seen)
        await doctor.send(room_id, "!help")
        explained = await doctor.wait_for_text(bot_a.user_id, after=mark)
        assert "identity has changed" in explained.body and "!find" not in explained.body

        # The explanation's key served that one message: the bot's next ordinary message is
        # encrypted with a key the held devices do not get.
        assert bot_a.actions is not None
        mark = len(doctor.seen)
        await bot_a.actions.send_notice(RoomId(room_id), "an ordinary answer")

        async def next_from_bot() -> Any:
            found = [e for e in doctor.seen[mark:] if getattr(e, "sender", None) == bot_a.user_id]
            return found[0] if found else None

        assert isinstance(await eventually(next_from_bot), MegolmEvent)

        # A message the bot cannot read (no key for it) is explained readably too.
        bot_device = doctor.client.device_store[bot_a.user_id][bot_a.device_id]
        doctor.client.blacklist_device(bot_device)
        mark = len(doctor.seen)
        await doctor.send(room_id, "!help")
        unreadable = await doctor.wait_for_text(bot_a.user_id, after=mark)
        assert "could not read your message" in unreadable.body, unreadable.body
        doctor.client.unblacklist_device(bot_device)

        listed = await _cli("pending-resets", "--config", config, "--json")
        assert listed.exit_code == 0, listed.output
        rows = {r["user_id"]: r for r in json.loads(listed.output)["pending_resets"]}
        assert rows[doctor.user_id]["since_ms"] > 0
        text = await _cli("pending-resets", "--config", config)
        assert doctor.user_id in text.output

        accepted = await _cli("accept-identity", "--config", config, doctor.user_id)
        assert accepted.exit_code == 0, accepted.output
        again = await _cli("accept-identity", "--config", config, doctor.user_id)
        assert again.exit_code == 1 and "No pending identity reset" in again.output
        bad = await _cli("accept-identity", "--config", config, "not-an-id")
        assert bad.exit_code == 2 and "Traceback" not in bad.output

        async def answered() -> Any:  # the running bot picks the decision up from disk
            mark = len(doctor.seen)
            await doctor.send(room_id, "!help")
            try:
                return await doctor.wait_for_text(
                    bot_a.user_id, lambda b: "!find" in b, after=mark, timeout=10
                )
            except AssertionError:
                return None

        await eventually(answered, timeout=40)
        entries = await _audit_outcomes(bot_a, doctor.user_id)
        assert entries == [Outcome.PENDING, Outcome.ACCEPTED_BY_OPERATOR], entries
    finally:
        await doctor.close()


async def _audit_outcomes(bot: BotRunner, user_id: str) -> list[str]:
    database = await BotDatabase.open(bot.config.effective_database_url, create=True)
    try:
        entries = await BotStore(database).audit_entries(limit=500)
    finally:
        await database.close()
    return [
        e.outcome for e in reversed(entries) if e.sender == user_id and e.command == AUDIT_COMMAND
    ]
