"""The bot's lifecycle on real homeservers: restarts, a lost device, redelivered commands,
invites from outside the federation's members, unreadable messages, untrusted devices."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from nio import Event, MegolmEvent, RoomCreateResponse, ToDeviceMessage, UnknownToDeviceEvent
from nio.store import DefaultStore
from typer.testing import CliRunner

from bot.app import production_runner
from bot.cli import bot_app
from bot.config import BotConfig
from bot.crypto.bootstrap import ensure_cross_signed, query_keys
from bot.crypto.keyfiles import PinStore
from bot.crypto.trust import Verdict, evaluate_user
from bot.ids import RoomId
from bot.matrix.homeserver import NioJson
from bot.runner import PINS_FILE, BotRunner
from bot.session import SESSION_FILE
from deploy.local.federation import Homeserver
from tests.conftest_bot import bot_config, start_bot
from tests.matrix_helpers import ENCRYPTION, Doctor, eventually

pytestmark = pytest.mark.slow

Bots = Callable[..., Awaitable[tuple[BotConfig, BotRunner]]]


@pytest.fixture
async def bots(hs_a: Homeserver, hs_b: Homeserver, tmp_path: Path) -> AsyncIterator[Bots]:
    """Start a fresh bot on hs_a (own account and store) per call; all stopped at the end."""
    running: list[BotRunner] = []

    async def make(**overrides: Any) -> tuple[BotConfig, BotRunner]:
        members = overrides.pop("member_servers", [hs_a.server_name, hs_b.server_name])
        config = await bot_config(hs_a, tmp_path / "bot", members, **overrides)
        runner = await start_bot(config)
        running.append(runner)
        return config, runner

    yield make
    for runner in running:
        await runner.stop()


class Recorder:
    """A sync listener (the hook the expiry engine uses) that notes event ids."""

    def __init__(self) -> None:
        self.event_ids: list[str] = []

    async def on_room_event(self, room_id: RoomId, event: Any) -> None:
        self.event_ids.append(event.event_id)

    async def on_gap(self, room_id: RoomId, prev_batch: str) -> None:
        return None


async def test_restart_keeps_device_and_identity_and_answers_what_came_meanwhile(
    bots: Bots, hs_b: Homeserver, tmp_path: Path
) -> None:
    config, bot = await bots()
    assert bot.cross_signing is not None and not bot.cross_signing.plan.nothing_to_do
    doctor = await Doctor.create(hs_b, tmp_path)
    try:
        room_id = await doctor.dm(bot.user_id)
        await doctor.send(room_id, "!help")
        await doctor.wait_for_text(bot.user_id, lambda b: "!find" in b)
        device, master = bot.device_id, bot.cross_signing.master_public
        await bot.stop()
        mark = len(doctor.seen)
        await doctor.send(room_id, "!find cardiologue")  # sent while the bot is down
        bot = await start_bot(config)
        assert bot.device_id == device
        assert bot.cross_signing is not None and bot.cross_signing.plan.nothing_to_do
        assert bot.cross_signing.master_public == master
        reply = await doctor.wait_for_text(bot.user_id, after=mark)
        assert "annuaire" in reply.body.lower() or "directory" in reply.body.lower()
    finally:
        await doctor.close()
        await bot.stop()


async def test_lost_device_is_signed_again_with_the_same_identity(
    bots: Bots, hs_b: Homeserver, tmp_path: Path
) -> None:
    config, bot = await bots()
    assert bot.cross_signing is not None
    old_device, master = bot.device_id, bot.cross_signing.master_public
    await bot.stop()
    (config.store_dir / SESSION_FILE).unlink()  # the login is lost; the keys file is not
    bot = await start_bot(config)
    doctor = await Doctor.create(hs_b, tmp_path)
    try:
        assert bot.device_id != old_device
        plan = bot.cross_signing.plan if bot.cross_signing else None
        assert plan is not None and plan.sign_device and not plan.upload and not plan.generate
        answer = await query_keys(NioJson(doctor.client), [bot.user_id])
        trust = evaluate_user(bot.user_id, answer, master)
        assert trust.devices[bot.device_id] is Verdict.CROSS_SIGNED
        room_id = await doctor.dm(bot.user_id)
        await doctor.send(room_id, "!help")
        await doctor.wait_for_text(bot.user_id, lambda b: "!find" in b)
    finally:
        await doctor.close()
        await bot.stop()


async def test_a_redelivered_command_is_not_run_twice(
    bots: Bots, hs_a: Homeserver, tmp_path: Path
) -> None:
    config, bot = await bots()
    doctor = await Doctor.create(hs_a, tmp_path)
    try:
        room_id = await doctor.dm(bot.user_id)
        await doctor.send(room_id, "!help")
        await doctor.wait_for_text(bot.user_id, lambda b: "!find" in b)
        assert bot.client is not None
        before = str(bot.client.next_batch)
        mark = len(doctor.seen)
        second = await doctor.send(room_id, "!help")
        await doctor.wait_for_text(bot.user_id, lambda b: "!find" in b, after=mark)
        user, device = bot.user_id, bot.device_id
        await bot.stop()
        # Rewind the stored sync token: the next sync delivers the second !help again.
        store = DefaultStore(user, device, str(config.store_dir), config.resolve_pickle_key())
        store.save_sync_token(before)
        store.database.close()
        bot = production_runner(config)
        seen = Recorder()
        bot.add_listener(seen)
        await bot.start()
        mark = len(doctor.seen)
        await doctor.send(room_id, "!find cardiologue")  # barrier: its answer comes after
        await doctor.wait_for_text(bot.user_id, lambda b: "!find" not in b[:40], after=mark)
        helps = [e for e in doctor.seen[mark:] if e.sender == bot.user_id and "!case" in e.body]
        assert helps == []
        assert second in seen.event_ids  # it really was delivered again
    finally:
        await doctor.close()
        await bot.stop()


async def test_invites_from_non_member_servers_are_ignored(
    bots: Bots, hs_a: Homeserver, hs_b: Homeserver, tmp_path: Path
) -> None:
    _config, bot = await bots(member_servers=[hs_a.server_name])  # hs_b is not a member here
    outsider = await Doctor.create(hs_b, tmp_path, name="outsider")
    member = await Doctor.create(hs_a, tmp_path, name="member")
    try:
        response = await outsider.client.room_create(is_direct=True, invite=[bot.user_id])
        outside_room = response.room_id
        assert bot.client is not None
        client = bot.client

        async def invited() -> bool | None:
            return True if outside_room in client.invited_rooms else None

        await eventually(invited)
        await member.dm(bot.user_id)  # barrier: a later invite is accepted
        assert outside_room not in client.rooms
        assert outsider.texts_from(outside_room, bot.user_id) == []
    finally:
        await outsider.close()
        await member.close()


async def test_unreadable_message_gets_a_plain_words_answer(
    bots: Bots, hs_b: Homeserver, tmp_path: Path
) -> None:
    _config, bot = await bots(undecryptable_grace_seconds=1)
    doctor = await Doctor.create(hs_b, tmp_path)
    try:
        room_id = await doctor.dm(bot.user_id)
        await doctor.send(room_id, "!help")
        await doctor.wait_for_text(bot.user_id, lambda b: "!find" in b)
        bot_device = doctor.client.device_store[bot.user_id][bot.device_id]
        doctor.client.blacklist_device(bot_device)  # the bot will not get this message's key
        mark = len(doctor.seen)
        await doctor.send(room_id, "!help")
        notice = await doctor.wait_for_text(bot.user_id, after=mark)
        assert "could not read your message" in notice.body
        assert "n'ai pas pu lire" in notice.body
    finally:
        await doctor.close()


async def test_withheld_key_is_explained_with_its_reason(
    bots: Bots, hs_a: Homeserver, tmp_path: Path
) -> None:
    _config, bot = await bots(undecryptable_grace_seconds=60)
    doctor = await Doctor.create(hs_a, tmp_path)
    try:
        room_id = await doctor.dm(bot.user_id)
        await doctor.send(room_id, "!help")
        await doctor.wait_for_text(bot.user_id, lambda b: "!find" in b)
        client = doctor.client
        client.blacklist_device(client.device_store[bot.user_id][bot.device_id])
        mark = len(doctor.seen)
        await doctor.send(room_id, "!help")
        session = client.olm.outbound_group_sessions[room_id]
        withheld = {
            "algorithm": "m.megolm.v1.aes-sha2",
            "room_id": room_id,
            "session_id": session.id,
            "sender_key": client.olm.account.identity_keys["curve25519"],
            "code": "m.unverified",
            "reason": "Device not verified",
        }
        await client.to_device(
            ToDeviceMessage("m.room_key.withheld", bot.user_id, bot.device_id, withheld)
        )
        # Well before the 60 s grace: the answer comes from the withheld notice.
        notice = await doctor.wait_for_text(bot.user_id, after=mark, timeout=20)
        assert "does not consider my session verified" in notice.body
    finally:
        await doctor.close()


async def test_device_not_cross_signed_gets_no_room_key(
    bots: Bots, hs_b: Homeserver, tmp_path: Path
) -> None:
    _config, bot = await bots()
    doctor = await Doctor.create(hs_b, tmp_path, cross_sign=False)
    withheld: list[dict[str, Any]] = []

    async def on_to_device(event: Any) -> None:
        if getattr(event, "type", None) == "m.room_key.withheld":
            withheld.append(event.source["content"])

    doctor.client.add_to_device_callback(on_to_device, UnknownToDeviceEvent)
    try:
        room_id = await doctor.dm(bot.user_id)
        await doctor.send(room_id, "!help")

        async def undecryptable_reply() -> Any:
            found = [e for e in doctor.seen if e.sender == bot.user_id]
            return found[0] if found else None

        reply = await eventually(undecryptable_reply)
        assert isinstance(reply, MegolmEvent)  # the bot withheld its key from this device
        assert bot.client is not None
        device = bot.client.device_store[doctor.user_id][doctor.client.device_id]
        assert device.blacklisted and not device.verified

        async def told() -> Any:
            return next((w for w in withheld if w["session_id"] == reply.session_id), None)

        notice = await eventually(told)  # and its client was told why, in its own words
        assert notice["code"] == "m.unverified" and notice["room_id"] == room_id
    finally:
        await doctor.close()


async def test_a_command_interrupted_by_a_stop_is_delivered_again(
    hs_a: Homeserver, hs_b: Homeserver, tmp_path: Path
) -> None:
    """The sync position is saved only after a message's handler finished: an interrupted
    one comes back after the restart (the dispatcher's store then makes it run once)."""
    config = await bot_config(hs_a, tmp_path / "bot", [hs_a.server_name])
    started = asyncio.Event()
    handled: list[str] = []

    async def stuck(actions: Any, stack: Any) -> Any:
        async def handle(msg: Any) -> None:
            started.set()
            await asyncio.Event().wait()  # never finishes: the bot stops meanwhile

        return handle

    async def recording(actions: Any, stack: Any) -> Any:
        async def handle(msg: Any) -> None:
            handled.append(msg.event_id)
            await actions.send_notice(msg.room_id, f"echo {len(msg.body)}")

        return handle

    bot = await start_bot(config, stuck)
    doctor = await Doctor.create(hs_a, tmp_path)
    try:
        room_id = await doctor.dm(bot.user_id)
        event_id = await doctor.send(room_id, "!anything")
        await asyncio.wait_for(started.wait(), 30)
        await bot.stop()
        bot = await start_bot(config, recording)
        await doctor.wait_for_text(bot.user_id, lambda b: b.startswith("echo"))
        assert event_id in handled
    finally:
        await doctor.close()
        await bot.stop()


async def test_changed_identity_is_flagged_and_untrusted_until_forgotten(
    bots: Bots, hs_b: Homeserver, tmp_path: Path
) -> None:
    """Trust on first use: a doctor whose master key changes (reset, or an impostor) gets no
    room keys, only a readable explanation, until an operator runs `forget-identity`."""
    config, bot = await bots()
    doctor = await Doctor.create(hs_b, tmp_path)
    try:
        room_id = await doctor.dm(bot.user_id)
        await doctor.send(room_id, "!help")
        await doctor.wait_for_text(bot.user_id, lambda b: "!find" in b)
        pins = PinStore(config.store_dir / PINS_FILE)
        first = pins.get(doctor.user_id)
        assert first is not None

        (doctor.store_dir / "cs.json").unlink()  # the doctor resets their identity
        await ensure_cross_signed(
            NioJson(doctor.client),
            doctor.user_id,
            str(doctor.client.device_id),
            doctor.store_dir / "cs.json",
            doctor.password,
        )
        assert bot.client is not None
        client = bot.client

        async def flagged() -> bool | None:
            device = client.device_store[doctor.user_id][doctor.client.device_id]
            return True if device.blacklisted else None

        await eventually(flagged, timeout=30)
        assert doctor.user_id in PinStore(config.store_dir / PINS_FILE).changed()
        mark = len(doctor.seen)
        await doctor.send(room_id, "!help")
        explained = await doctor.wait_for_text(bot.user_id, after=mark)  # readable
        assert "identity has changed" in explained.body and "!find" not in explained.body

        await bot.stop()
        result = await asyncio.to_thread(  # the command runs its own event loop
            CliRunner().invoke,
            bot_app,
            ["forget-identity", "--config", str(config_file(config)), doctor.user_id],
        )
        assert result.exit_code == 0, result.output
        bot = await start_bot(config)
        mark = len(doctor.seen)
        await doctor.send(room_id, "!help")
        await doctor.wait_for_text(bot.user_id, lambda b: "!find" in b, after=mark)
        assert PinStore(config.store_dir / PINS_FILE).get(doctor.user_id) != first
    finally:
        await doctor.close()
        await bot.stop()


def config_file(config: BotConfig) -> Path:
    """Write `config` back as YAML (secrets included) for the CLI."""
    data = config.model_dump(mode="json", exclude_none=True)
    data["password"] = config.password_value()
    data.pop("pickle_key", None)
    path = config.store_dir.parent / "bot.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class FirstSync(Recorder):
    """Also notes, for each sync response, the joined rooms it carried and their state."""

    def __init__(self) -> None:
        super().__init__()
        self.responses: list[Any] = []

    async def after_sync(self, response: Any) -> None:
        self.responses.append(response)


async def _restarted(config: BotConfig) -> tuple[BotRunner, FirstSync]:
    bot = production_runner(config)
    seen = FirstSync()
    bot.add_listener(seen)
    await bot.start()
    return bot, seen


async def _answered_encrypted(doctor: Doctor, room_id: str, bot_id: str) -> None:
    """`!help` in `room_id` is answered, and the answer crossed the homeserver encrypted."""
    mark = len(doctor.seen)
    await doctor.send(room_id, "!help")
    reply = await doctor.wait_for_text(bot_id, lambda b: "!find" in b, after=mark)
    assert reply.decrypted, f"the bot answered in the clear in {room_id}"
    path = f"/_matrix/client/v3/rooms/{quote(room_id)}/messages?dir=b&limit=20"
    status, page = await NioJson(doctor.client).request_json("GET", path, None)
    assert status == 200, page
    sent = [e for e in page["chunk"] if e["sender"] == bot_id and "state_key" not in e]
    assert sent and {e["type"] for e in sent} == {"m.room.encrypted"}, sent


async def _caught_up(bot: BotRunner, doctor: Doctor, room_id: str) -> None:
    """Send a last message and wait until the bot has seen it and saved its sync position:
    a stop before that would replay the end of the conversation at the next start."""
    client = bot.client
    assert client is not None
    seen: set[str] = set()

    async def note(room: Any, event: Any) -> None:
        seen.add(str(getattr(event, "event_id", "")))

    client.add_event_callback(note, Event)
    marker = await doctor.send(room_id, "merci")

    async def saved() -> bool | None:
        done = marker in seen and client.store.load_sync_token() == client.next_batch
        return True if done else None

    await eventually(saved)


async def test_a_restart_syncs_only_changed_rooms_yet_speaks_encrypted_in_every_room(
    bots: Bots, hs_a: Homeserver, tmp_path: Path
) -> None:
    """A bot in thousands of rooms cannot have the state of each sent at every restart: the
    first sync carries only the rooms where something happened. A room it knows only from the
    list of joined rooms still gets encrypted answers, even one its store forgot was
    encrypted (the bot asks the homeserver rather than believe the room is in the clear).
    A room asked for without encryption is encrypted too: the guard adds it."""
    config, bot = await bots()
    doctor = await Doctor.create(hs_a, tmp_path)
    try:
        busy, idle, forgotten = [await doctor.dm(bot.user_id) for _ in range(3)]
        made = await doctor.client.room_create(invite=[bot.user_id])
        assert isinstance(made, RoomCreateResponse), made
        plain = str(made.room_id)
        await doctor.wait_joined(plain, bot.user_id)
        for room_id in (idle, forgotten, busy):
            await _answered_encrypted(doctor, room_id, bot.user_id)
        await _caught_up(bot, doctor, busy)
        user, device = bot.user_id, bot.device_id
        await bot.stop()
        store = DefaultStore(user, device, str(config.store_dir), config.resolve_pickle_key())
        store.delete_encrypted_room(forgotten)
        assert forgotten not in store.load_encrypted_rooms()
        store.database.close()
        mark = len(doctor.seen)
        await doctor.send(busy, "!help")  # sent while the bot is down

        bot, seen = await _restarted(config)
        assert bot.client is not None
        first = seen.responses[0]
        assert busy in first.rooms.join
        assert not {idle, forgotten, plain} & set(first.rooms.join)
        assert {busy, idle, forgotten, plain} <= set(bot.client.rooms)
        assert all(bot.client.rooms[r].encrypted for r in (busy, idle, plain))
        assert not bot.client.rooms[forgotten].encrypted  # what the store says, for now
        await doctor.wait_for_text(bot.user_id, lambda b: "!find" in b, after=mark)
        await _answered_encrypted(doctor, forgotten, bot.user_id)
        assert bot.client.rooms[forgotten].encrypted
        await _answered_encrypted(doctor, idle, bot.user_id)
    finally:
        await doctor.close()
        await bot.stop()


async def test_a_room_the_client_holds_as_unencrypted_still_gets_encrypted_answers(
    bots: Bots, hs_a: Homeserver, tmp_path: Path
) -> None:
    """Whatever made nio hold an encrypted room as unencrypted (a room first met in a sync
    that carried only what changed, a store that lost its list), the bot asks the homeserver
    before its first message there and encrypts."""
    _config, bot = await bots()
    doctor = await Doctor.create(hs_a, tmp_path)
    try:
        room_id = await doctor.dm(bot.user_id)
        await _answered_encrypted(doctor, room_id, bot.user_id)
        client = bot.client
        assert client is not None
        client.rooms[room_id].encrypted = False
        client.encrypted_rooms.discard(room_id)
        await _answered_encrypted(doctor, room_id, bot.user_id)
        assert client.rooms[room_id].encrypted and room_id in client.encrypted_rooms
    finally:
        await doctor.close()
        await bot.stop()


async def test_a_start_without_sync_token_syncs_no_room_yet_joins_and_answers_encrypted(
    bots: Bots, hs_a: Homeserver, tmp_path: Path
) -> None:
    """A start without a sync token asks the homeserver for no room at all (building an
    entry for each of thousands of rooms takes minutes), lists the joined rooms, accepts
    the invitations that came meanwhile, and speaks encrypted everywhere. Here the whole
    store is lost (a new device: no sync token, no list of encrypted rooms), so the bot
    knows nothing of the rooms' encryption but what it asks before speaking. (A new device,
    too, because Synapse answers a repeated identical first sync from its two-minute
    response cache, which would hide the first sync from this test.)"""
    config, bot = await bots()
    doctor = await Doctor.create(hs_a, tmp_path)
    try:
        rooms = [await doctor.dm(bot.user_id) for _ in range(2)]
        for room_id in rooms:
            for _ in range(2):
                await _answered_encrypted(doctor, room_id, bot.user_id)
        old_device = bot.device_id
        await bot.stop()
        (config.store_dir / SESSION_FILE).unlink()  # new device: a store of its own
        made = await doctor.client.room_create(invite=[bot.user_id], initial_state=[ENCRYPTION])
        assert isinstance(made, RoomCreateResponse), made
        invited = str(made.room_id)  # an invitation the bot never saw

        bot, seen = await _restarted(config)
        assert bot.client is not None and bot.device_id != old_device
        assert not seen.responses[0].rooms.join
        assert set(rooms) <= set(bot.client.rooms)
        await doctor.wait_joined(invited, bot.user_id, timeout=60)
        await doctor.wait_devices_known(bot.user_id)
        for room_id in [*rooms, invited]:
            # The doctor's client shares a new room key, which the bot's new device gets.
            doctor.client.olm.outbound_group_sessions.pop(room_id, None)
            await _answered_encrypted(doctor, room_id, bot.user_id)
            assert bot.client.rooms[room_id].encrypted
    finally:
        await doctor.close()
        await bot.stop()
