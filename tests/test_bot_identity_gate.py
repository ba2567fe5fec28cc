"""The identity gate's decisions, with fakes for nio and the send paths (no homeserver).

The real thing is proven end to end in tests/test_bot_identity_reset.py; here every branch
is walked quickly: who passes through, who is held, which confirmation counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.commands.context import IncomingMessage
from bot.crypto.keyfiles import PinStore
from bot.identity import gate as gate_module
from bot.identity.gate import IdentityGate
from bot.identity.texts import CONFIRMED, NOTHING_PENDING, REFUSED, Outcome, explain, reset_code
from bot.ids import EventId, RoomId, UserId

DOC = UserId("@doc:hs")
ROOM = RoomId("!dm:hs")
OLD_DEVICE = "curve-old"
NEW_DEVICE = "curve-new"


class FakeOlm:
    def __init__(self) -> None:
        self.users_for_key_query: set[str] = set()


class FakeClient:
    def __init__(self) -> None:
        self.olm = FakeOlm()
        self.should_query_keys = False


class FakeActions:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_notice(self, room_id: RoomId, body: str, html: str | None = None) -> None:
        self.sent.append(body)


class World:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pins = PinStore(tmp_path / "pins.json")
        self.client = FakeClient()
        self.actions = FakeActions()
        self.readable: list[str] = []
        self.audit: list[tuple[str, str]] = []

        async def send_readable(client: Any, room_id: RoomId, body: str) -> EventId:
            self.readable.append(body)
            return EventId("$x")

        monkeypatch.setattr(gate_module, "send_readable", send_readable)
        self.gate = IdentityGate(self.client, self.actions, self.pins, 300)  # type: ignore[arg-type]

        async def audit(user: UserId, room: str, command: str, outcome: str) -> None:
            self.audit.append((user, outcome))

        self.gate.audit = audit

    async def say(self, body: str, sender_key: str | None = NEW_DEVICE) -> bool:
        msg = IncomingMessage(ROOM, EventId("$e"), DOC, body, 0, True)
        return await self.gate.intercept(msg, sender_key)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    return World(tmp_path, monkeypatch)


async def test_a_trusted_doctors_messages_pass_through(world: World) -> None:
    world.pins.pin(DOC, "K1")
    assert not await world.say("hello")
    assert not await world.say("!find cardio")
    assert await world.say("!identity confirm ABCDEF")  # answered here, nothing to confirm
    assert world.actions.sent == [NOTHING_PENDING] and world.readable == []


async def test_a_held_doctor_gets_one_explanation_and_no_command_runs(world: World) -> None:
    world.pins.pin(DOC, "K1")
    world.pins.flag_change(DOC, "K2")
    assert await world.say("!find cardio")
    assert await world.say("!case new x")  # held too, explanation not repeated
    assert not await world.say("just chatting")  # not a command: not the gate's business
    assert world.readable == [explain(reset_code("K2"))] and world.actions.sent == []


async def test_only_an_earlier_session_quoting_the_code_confirms(world: World) -> None:
    world.pins.pin(DOC, "K1")
    world.pins.vouch(DOC, OLD_DEVICE)
    world.pins.flag_change(DOC, "K2")
    code = reset_code("K2")

    assert await world.say(f"!identity confirm {code}", NEW_DEVICE)
    assert await world.say(f"!identity confirm {code}", NEW_DEVICE)  # flood: said once
    assert await world.say(f"!identity confirm {code}", None)  # unencrypted: no device
    assert world.readable == [REFUSED]
    assert world.audit == [(DOC, Outcome.CONFIRM_REFUSED)]

    assert await world.say("!identity confirm", OLD_DEVICE)
    assert await world.say(f"!identity confirm {reset_code('K0')}", OLD_DEVICE)  # replayed
    assert world.readable[1:] == [explain(code), explain(code)]
    assert world.pins.get(DOC) == "K1"

    assert await world.say(f"!identity confirm {code.lower()}", OLD_DEVICE)
    assert world.pins.get(DOC) == "K2" and world.pins.changed() == {}
    assert world.readable[-1] == CONFIRMED
    assert world.audit[-1] == (DOC, Outcome.CONFIRMED_BY_SESSION)
    assert DOC in world.client.olm.users_for_key_query  # judged again before the next answer
    assert not await world.say("!find cardio")  # trusted again


async def test_held_doctors_get_unreadable_notices_readably_others_do_not(world: World) -> None:
    world.pins.pin(DOC, "K1")
    assert not await world.gate.tell_held(ROOM, DOC, "notice")
    world.pins.flag_change(DOC, "K2")
    assert await world.gate.tell_held(ROOM, DOC, "notice")
    assert world.readable == ["notice"]


async def test_an_operator_decision_on_disk_is_picked_up(world: World, tmp_path: Path) -> None:
    world.pins.pin(DOC, "K1")
    world.pins.flag_change(DOC, "K2")
    PinStore(tmp_path / "pins.json").accept(DOC)  # `caducee bot accept-identity`
    world.gate.refresh()
    assert DOC in world.client.olm.users_for_key_query
    assert not await world.say("!find cardio")


async def test_the_bridge_is_told_at_each_change_of_the_pending_list(
    world: World, tmp_path: Path
) -> None:
    """New reset, confirmation, operator's accept or forget: each calls `on_change` (the bot's
    `ResetReporter`); a refused confirmation or a quiet refresh does not."""
    told: list[str] = []
    world.gate.on_change = lambda: told.append(str(sorted(world.pins.changed())))
    world.pins.pin(DOC, "K1")
    world.pins.vouch(DOC, OLD_DEVICE)
    world.pins.flag_change(DOC, "K2")
    world.gate.noticed(DOC)  # what the device trust calls after `flag_change`
    assert told == [f"['{DOC}']"]
    code = reset_code("K2")
    assert await world.say(f"!identity confirm {code}", NEW_DEVICE)  # refused: no change
    world.gate.refresh()  # nothing changed on disk
    assert len(told) == 1
    assert await world.say(f"!identity confirm {code}", OLD_DEVICE)
    assert told[-1] == "[]"

    operator = PinStore(tmp_path / "pins.json")  # `caducee bot accept-identity` / `forget-...`
    world.pins.flag_change(DOC, "K3")
    operator.refresh()
    operator.accept(DOC)
    world.gate.refresh()
    assert told[-1] == "[]" and len(told) == 3
    world.pins.flag_change(DOC, "K4")
    operator.forget(DOC)
    world.gate.refresh()
    assert told[-1] == "[]" and len(told) == 4
