"""Element's crypto against our homeservers and our bot.

Doctors use Element, whose crypto (matrix-js-sdk's Rust crypto) can "exclude insecure
devices": room keys go only to devices their owner cross-signed, and messages from other
devices are refused. These tests run that very code (tests/element/client.mjs, driven through
tests/element_driver.py) against real Synapse processes:

1. two Element clients on two member homeservers talk: the harness itself works;
2. a matrix-nio device that nobody cross-signed is shut out (keys withheld, its messages
   refused) while an Element in the default mode still reads it with a red shield: the
   strict mode is really on, so the bot test below proves something;
3. the Caducée bot answers `!help` to an Element in the strict mode, decrypted, with no
   shield and nothing withheld.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import pytest
from nio import AsyncClient, AsyncClientConfig, MegolmEvent, UnknownToDeviceEvent

from deploy.local.federation import Homeserver
from tests.element_driver import ElementClient, ElementClientError, installation_problem

pytestmark = pytest.mark.slow

MakeElement = Callable[..., Awaitable[ElementClient]]


class _HasUserId(Protocol):
    user_id: str


def _localpart(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def element() -> AsyncIterator[MakeElement]:
    """Makes Element-like clients: a fresh account, signed in, cross-signed by default."""
    problem = installation_problem()
    if problem is not None:
        pytest.fail(f"the Element test client cannot run: {problem}")
    clients: list[ElementClient] = []

    async def make(
        hs: Homeserver, prefix: str, *, isolation: str = "only_signed", cross_sign: bool = True
    ) -> ElementClient:
        user = await hs.register_user(_localpart(prefix), secrets.token_urlsafe(16))
        client = await ElementClient.start()
        clients.append(client)
        await client.login(
            hs.client_url,
            user.user_id,
            user.password,
            access_token=user.access_token,
            device_id=user.device_id,
            isolation=isolation,
        )
        if cross_sign:
            status = await client.cross_sign()
            assert status["cross_signing_ready"] and status["device_signed_on_server"], status
        return client

    yield make
    await asyncio.gather(*(client.close() for client in clients))


async def _until_synced(client: AsyncClient, what: str, predicate: Callable[[], bool]) -> None:
    """Waits, sync after sync, until the nio client's state satisfies `predicate`."""

    async def loop() -> None:
        while not predicate():
            await client.synced.wait()

    try:
        await asyncio.wait_for(loop(), 30)
    except TimeoutError:
        pytest.fail(f"nio client: timed out waiting for {what}")


class PlainNioDevice:
    """A matrix-nio device as nio makes it: E2EE, but not cross-signed by anyone."""

    def __init__(self, hs: Homeserver, store: Path, user_id: str, token: str, device: str):
        store.mkdir(mode=0o700, parents=True)
        config = AsyncClientConfig(
            encryption_enabled=True, store_sync_tokens=True, pickle_key=secrets.token_hex(16)
        )
        self.client = AsyncClient(
            hs.client_url, user_id, device_id=device, store_path=str(store), config=config
        )
        self.client.restore_login(user_id, device, token)
        assert self.client.olm is not None, "E2EE must be active (crypto store loaded)"
        self.withheld: list[dict[str, Any]] = []
        self.undecryptable: list[MegolmEvent] = []
        self.client.add_to_device_callback(self._on_to_device, UnknownToDeviceEvent)
        self.client.add_event_callback(self._on_undecryptable, MegolmEvent)
        self._task: asyncio.Task[None] | None = None

    async def _on_to_device(self, event: UnknownToDeviceEvent) -> None:
        if event.type == "m.room_key.withheld":  # nio 0.26 does not parse it
            self.withheld.append(event.source.get("content", {}))

    async def _on_undecryptable(self, _room: object, event: MegolmEvent) -> None:
        self.undecryptable.append(event)

    async def start(self) -> None:
        await self.client.keys_upload()
        await self.client.sync(timeout=0, full_state=True)
        self._task = asyncio.create_task(self.client.sync_forever(timeout=500))

    async def join(self, room_id: str) -> None:
        await _until_synced(self.client, "the invite", lambda: room_id in self.client.invited_rooms)
        await self.client.join(room_id)
        await _until_synced(self.client, "the join", lambda: room_id in self.client.rooms)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.client.close()


def _withheld_for(entries: Iterable[dict[str, Any]], user_id: str) -> list[dict[str, Any]]:
    return [e for e in entries if e["user_id"] == user_id]


async def _assert_trusted_message(
    reader: ElementClient, room_id: str, sender: ElementClient | _HasUserId, body: str | None
) -> dict[str, Any]:
    """The next message from `sender` decrypts, with no shield, from a cross-signed device."""
    assert sender.user_id is not None
    got = await reader.wait_for_message(room_id=room_id, sender=sender.user_id)
    assert got["decrypted"], got
    if body is not None:
        assert got["body"] == body
    assert (got["shield_colour"], got["shield_reason"]) == ("NONE", None), got
    assert got["sender_device_signed_by_owner"] is True, got
    # A key may trail its message over federation (Element shows "waiting for this message"
    # for a moment); anything else (withheld, refused device) is a real failure.
    assert set(got["failure_codes_seen"]) <= {"MEGOLM_UNKNOWN_INBOUND_SESSION_ID"}, got
    return got


async def test_client_answers_bad_commands_with_clear_errors(element: MakeElement) -> None:
    """Mistakes in a test show up as a named error from the client, not as a hang."""
    client = await ElementClient.start()
    try:
        cases: list[tuple[str, dict[str, Any], str]] = [
            ("fly", {}, "UNKNOWN_COMMAND"),
            ("send", {"room_id": "!r:x", "body": "x"}, "NOT_LOGGED_IN"),
            ("login", {"user_id": "@x:y", "password": "p"}, "BAD_REQUEST"),
            ("login", {"homeserver_url": "http://127.0.0.1:9", "user_id": "@x:y"}, "BAD_REQUEST"),
        ]
        for cmd, args, code in cases:
            with pytest.raises(ElementClientError) as failure:
                await client.request(cmd, **args)
            assert failure.value.code == code, failure.value
    finally:
        await client.close()


async def test_two_element_clients_talk_across_member_homeservers(
    hs_a: Homeserver, hs_b: Homeserver, element: MakeElement
) -> None:
    alice = await element(hs_a, "alice")
    bruno = await element(hs_b, "bruno")
    room_id = await alice.create_dm(str(bruno.user_id), wait_join=False)
    assert await bruno.wait_for_invite(sender=alice.user_id) == room_id
    assert (await bruno.join(room_id))["encrypted"] is True
    await alice.wait_for_join(room_id, str(bruno.user_id))

    await alice.send(room_id, "Bonjour, un avis sur le dossier ?")
    got = await _assert_trusted_message(bruno, room_id, alice, "Bonjour, un avis sur le dossier ?")
    assert got["sender_device_id"] == alice.device_id
    await bruno.send(room_id, "Volontiers.")
    got = await _assert_trusted_message(alice, room_id, bruno, "Volontiers.")
    assert got["sender_device_id"] == bruno.device_id

    for client in (alice, bruno):
        assert (await client.withheld())["sent"] == [], "cross-signed devices get every key"


async def test_strict_element_shuts_out_a_device_nobody_cross_signed(
    hs_a: Homeserver, hs_b: Homeserver, element: MakeElement, tmp_path: Path
) -> None:
    strict = await element(hs_a, "strict")
    lenient = await element(hs_a, "lenient", isolation="all")  # Element's default mode
    user = await hs_b.register_user(_localpart("nio"), secrets.token_urlsafe(16))
    nio = PlainNioDevice(hs_b, tmp_path / "nio", user.user_id, user.access_token, user.device_id)
    await nio.start()
    try:
        room_id = await strict.create_room([str(lenient.user_id), user.user_id], wait_join=False)
        await lenient.join(await lenient.wait_for_invite(sender=strict.user_id))
        await nio.join(room_id)
        await strict.wait_for_join(room_id, user.user_id)
        await strict.wait_for_join(room_id, str(lenient.user_id))

        # Strict Element -> room: the key goes to the cross-signed Element, not to nio.
        await strict.send(room_id, "Pour les appareils vérifiés seulement")
        await _assert_trusted_message(
            lenient, room_id, strict, "Pour les appareils vérifiés seulement"
        )
        withheld = _withheld_for((await strict.withheld())["sent"], user.user_id)
        assert [(w["device_id"], w["code"], w["room_id"]) for w in withheld] == [
            (user.device_id, "m.unverified", room_id)
        ]
        await _until_synced(
            nio.client,
            "the withheld notice and the undecryptable message",
            lambda: bool(nio.withheld) and bool(nio.undecryptable),
        )
        assert nio.withheld[0]["code"] == "m.unverified"
        assert nio.undecryptable[0].sender == strict.user_id

        # nio -> room: strict Element refuses it; lenient Element reads it under a red shield.
        if nio.client.should_query_keys:
            await nio.client.keys_query()
        await nio.client.room_send(
            room_id,
            "m.room.message",
            {"msgtype": "m.text", "body": "Réponse d'un appareil non signé"},
            ignore_unverified_devices=True,
        )
        refused = await strict.wait_for_message(room_id=room_id, sender=user.user_id)
        assert not refused["decrypted"], refused
        assert refused["failure_code"] == "UNSIGNED_SENDER_DEVICE", refused
        assert refused["body"] is None
        shown = await lenient.wait_for_message(room_id=room_id, sender=user.user_id)
        assert shown["decrypted"] and shown["body"] == "Réponse d'un appareil non signé", shown
        assert (shown["shield_colour"], shown["shield_reason"]) == ("RED", "UNSIGNED_DEVICE")
        assert shown["sender_device_signed_by_owner"] is False
    finally:
        await nio.close()


async def test_strict_element_and_the_bot_trust_each_other(
    hs_a: Homeserver, element: MakeElement, bot_a: _HasUserId
) -> None:
    """A doctor's Element, in the strict mode, talks with the bot with no warning at all."""
    doctor = await element(hs_a, "doctor")
    room_id = await doctor.create_dm(bot_a.user_id)  # the bot joins DMs from member servers
    await doctor.send(room_id, "!help")
    reply = await _assert_trusted_message(doctor, room_id, bot_a, None)
    assert "!find" in reply["body"] and "!case" in reply["body"], reply["body"]
    assert _withheld_for((await doctor.withheld())["sent"], bot_a.user_id) == []
