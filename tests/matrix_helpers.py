"""Test doctors: real nio clients with real crypto stores that cross-sign themselves.

Element's strict mode ("only cross-signed devices") shuts out any device its owner did not
cross-sign, so every test client signs its own device with the same pure helpers the bot uses
(`bot.crypto.bootstrap.ensure_cross_signed`). Reusable by any test: `await Doctor.create(hs,
tmp_path)`, then `dm()`, `send()`, `wait_for_text()`, `close()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote

from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinedMembersResponse,
    JoinResponse,
    LocalProtocolError,
    MegolmEvent,
    RoomCreateResponse,
    RoomMessage,
    RoomSendResponse,
)

from bot.aio import wait_event
from bot.crypto.bootstrap import ensure_cross_signed
from bot.matrix.homeserver import NioJson
from deploy.local.federation import Homeserver

T = TypeVar("T")

ENCRYPTION = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float = 20.0, every: float = 0.1
) -> T:
    """Poll `probe` until it returns something other than None (or fail after `timeout`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await probe()
        if value is not None:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(every)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Doctor:
    """A practitioner's client: E2EE, cross-signed, syncing in the background."""

    client: AsyncClient
    password: str
    store_dir: Path
    seen: list[Any] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _sync: asyncio.Task[None] | None = None

    @property
    def user_id(self) -> str:
        return str(self.client.user_id)

    @classmethod
    async def create(
        cls, hs: Homeserver, tmp_path: Path, *, name: str = "doctor", cross_sign: bool = True
    ) -> Doctor:
        password = secrets.token_urlsafe(12)
        user = await hs.register_user(unique(name), password)
        store_dir = tmp_path / unique("store")
        store_dir.mkdir(mode=0o700, parents=True)
        client = AsyncClient(
            hs.client_url,
            user.user_id,
            device_id=user.device_id,
            store_path=str(store_dir),
            config=AsyncClientConfig(
                encryption_enabled=True,
                store_sync_tokens=True,
                pickle_key=secrets.token_urlsafe(24),
            ),
        )
        client.restore_login(user.user_id, user.device_id, user.access_token)
        assert client.olm is not None, "the test client must have working E2EE"
        await client.keys_upload()
        if cross_sign:
            await ensure_cross_signed(
                NioJson(client), user.user_id, user.device_id, store_dir / "cs.json", password
            )
        doctor = cls(client, password, store_dir)
        client.add_event_callback(doctor._on_event, (RoomMessage, MegolmEvent))
        await client.sync(timeout=0, full_state=True)
        doctor._sync = asyncio.create_task(doctor._sync_forever())
        return doctor

    async def _sync_forever(self) -> None:
        """nio's sync loop, started again when its key query races one of ours: nio raises
        LocalProtocolError when a query finds nothing left to ask, and its loop dies of it
        (a test then waited 30 s for a reply its doctor could no longer receive)."""
        while True:
            try:
                await self.client.sync_forever(timeout=5000)
            except LocalProtocolError:
                continue

    async def pause_sync(self) -> None:
        """Stop syncing (nothing received, no one-time key uploaded) until `resume_sync`."""
        if self._sync is not None:
            self._sync.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sync
            self._sync = None

    def resume_sync(self) -> None:
        if self._sync is None:
            self._sync = asyncio.create_task(self._sync_forever())

    async def _on_event(self, room: Any, event: Any) -> None:
        self.seen.append(event)
        self._arrived.set()

    async def dm(self, other: str, *, timeout: float = 20.0) -> str:
        """An encrypted direct chat with `other`, returned once `other` has joined."""
        response = await self.client.room_create(
            is_direct=True, invite=[other], initial_state=[ENCRYPTION]
        )
        assert isinstance(response, RoomCreateResponse), response
        room_id = str(response.room_id)
        await self.wait_joined(room_id, other, timeout=timeout)
        await self.wait_devices_known(other, timeout=timeout)
        return room_id

    async def wait_devices_known(self, user_id: str, *, timeout: float = 20.0) -> None:
        """Wait until our crypto knows `user_id`'s devices: a message sent before that would
        carry a room key for none of them (a race after a join over federation)."""
        olm = self.client.olm
        assert olm is not None

        async def known() -> bool | None:
            if any(True for _ in self.client.device_store.active_user_devices(user_id)):
                return True
            olm.users_for_key_query.add(user_id)
            with contextlib.suppress(Exception):
                await self.client.keys_query()
            return None

        await eventually(known, timeout=timeout)

    async def wait_joined(self, room_id: str, user_id: str, *, timeout: float = 20.0) -> None:
        async def joined() -> bool | None:
            members = await self.client.joined_members(room_id)
            ok = isinstance(members, JoinedMembersResponse) and any(
                m.user_id == user_id for m in members.members
            )
            room = self.client.rooms.get(room_id)
            # Our own sync must have seen the join too, or nio will not share the room key.
            seen = room is not None and user_id in room.users and user_id not in room.invited_users
            return True if ok and seen else None

        await eventually(joined, timeout=timeout)

    async def wait_sessions(self, room_id: str, *, timeout: float = 20.0) -> None:
        """Make sure we have an Olm session with every device in the room before the room key
        goes out: nio claims missing one-time keys once per share, and a claim that fails
        under load (over federation) leaves a device without the key for good."""

        async def complete() -> bool | None:
            missing = self.client.get_missing_sessions(room_id)
            if not missing:
                return True
            with contextlib.suppress(Exception):
                await self.client.keys_claim(missing)
            return None

        await eventually(complete, timeout=timeout, every=0.5)

    async def send(self, room_id: str, body: str) -> str:
        """Send an encrypted text message (key shared with every device: tests are lenient)."""
        client = self.client
        if client.should_query_keys:
            with contextlib.suppress(Exception):
                await client.keys_query()
        await self.wait_sessions(room_id)
        response = await client.room_send(
            room_id,
            "m.room.message",
            {"msgtype": "m.text", "body": body},
            ignore_unverified_devices=True,
        )
        assert isinstance(response, RoomSendResponse), response
        return str(response.event_id)

    def texts_from(self, room_id: str, sender: str) -> list[Any]:
        return [
            e
            for e in self.seen
            if getattr(e, "sender", None) == sender
            and isinstance(e, RoomMessage)
            and getattr(e, "room_id", room_id) in (room_id, None)
        ]

    async def wait_for_text(
        self,
        sender: str,
        predicate: Callable[[str], bool] = lambda body: True,
        *,
        after: int = 0,
        timeout: float = 30.0,
    ) -> Any:
        """The first decrypted message from `sender` (from index `after` of `seen`) whose body
        matches. Undecryptable messages from `sender` fail the test at once."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        index = after
        while True:
            while index < len(self.seen):
                event = self.seen[index]
                index += 1
                if getattr(event, "sender", None) != sender:
                    continue
                if isinstance(event, MegolmEvent):
                    raise AssertionError(f"message {event.event_id} from {sender} undecryptable")
                if predicate(str(getattr(event, "body", ""))):
                    return event
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no matching message from {sender} within {timeout} s")
            self._arrived.clear()
            await wait_event(self._arrived, min(remaining, 1.0))

    async def close(self) -> None:
        if self._sync is not None:
            self._sync.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sync
        await self.client.close()


async def join(doctor: Doctor, room_id: str) -> bool | None:
    """Join once (for `eventually`: None until the homeserver accepts)."""
    response = await doctor.client.join(room_id)
    return True if isinstance(response, JoinResponse) else None


@dataclass(frozen=True)
class OpenCase:
    dm: str  # the creator's DM with the bot, where the command was typed
    room: str  # the case room, every doctor joined


async def open_case(bot_user_id: str, creator: Doctor, others: list[Doctor], args: str) -> OpenCase:
    """``!case new <args>`` typed by `creator` in a new DM with the bot; every doctor joins
    the room from the link in the bot's answer, and each one's crypto knows the others'."""
    dm = await creator.dm(bot_user_id)
    mark = len(creator.seen)
    await creator.send(dm, f"!case new {args}")
    reply = await creator.wait_for_text(bot_user_id, lambda b: "matrix.to" in b, after=mark)
    match = re.search(r"matrix\.to/#/(![^?\s)]+)", reply.body)
    assert match, reply.body
    room = unquote(match.group(1))
    everyone = [creator, *others]
    for doctor in everyone:
        await eventually(functools.partial(join, doctor, room))
        await doctor.wait_joined(room, doctor.user_id)
    for doctor in everyone:
        for other in everyone:
            if other is not doctor:
                await doctor.wait_joined(room, other.user_id)
                await doctor.wait_devices_known(other.user_id)
    return OpenCase(dm, room)
