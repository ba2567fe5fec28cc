"""The bot's nio client: it keeps the cross-signing data nio drops, paces its requests, and
reaches the devices nio leaves without the room key.

It overrides only public `AsyncClient` methods; what it needs of nio's private API goes
through `bot.matrix.nio_private`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from nio import (
    AsyncClient,
    JoinedRoomsResponse,
    KeysQueryResponse,
    MatrixRoom,
    SyncResponse,
)
from nio.api import Api

from bot.crypto.signing import Json
from bot.matrix import requests
from bot.matrix.homeserver import NioJson, send_json
from bot.matrix.nio_private import LeanSync, apply_invites, build_path, send_parsed
from bot.sync_filter import INVITE_SWEEP_FILTER
from bot.throttle import RequestGate
from bot.unreadable import WITHHELD_TYPE

logger = logging.getLogger(__name__)

_SYNC_PATH = re.compile(r"^/_matrix/client/(?:r0|v3)/sync(?:\?|$)")


@dataclass
class RawKeysQueryResponse(KeysQueryResponse):  # type: ignore[misc]
    """nio's key query answer plus the raw JSON (master and self-signing keys live there)."""

    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, parsed_dict: dict[Any, Any]) -> Any:
        parsed = KeysQueryResponse.from_dict(parsed_dict)
        if not isinstance(parsed, KeysQueryResponse):
            return parsed
        return cls(parsed.device_keys, parsed.failures, raw=parsed_dict)


LATE_CLAIM_INTERVAL_S = 60.0
INVITE_SWEEP_TIMEOUT_S = 900.0


class CaduceeClient(LeanSync, AsyncClient):  # type: ignore[misc]
    """An AsyncClient whose key queries also feed our cross-signing trust decisions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_keys_query: Callable[[Json], object] | None = None
        self._claimed_at: dict[tuple[str, str], float] = {}
        self.gate = RequestGate()
        self._plain: set[str] = set()
        """Rooms the homeserver said have no encryption (asked before the first send)."""

    async def send(
        self, method: str, path: str, *args: Any, **kwargs: Any
    ) -> aiohttp.ClientResponse:
        """Every request but the long-polling sync goes through the bot's `RequestGate`."""
        call = functools.partial(super().send, method, path, *args, **kwargs)
        return await (call() if _SYNC_PATH.match(path) else self.gate.through(call))

    async def room_send(self, room_id: str, *args: Any, **kwargs: Any) -> Any:
        await self.confirm_encryption(room_id)
        await self._give_room_key_to_late_devices(room_id)
        return await super().room_send(room_id, *args, **kwargs)

    async def confirm_encryption(self, room_id: str) -> None:
        """nio sends in the clear to a room it holds as unencrypted. It can hold an encrypted
        room so when it never saw the room's ``m.room.encryption`` event (a room first met in
        a sync that carried only what changed, a store that lost its list): before the first
        message to such a room, ask the homeserver, and encrypt unless it says there is no
        encryption."""
        room = self.rooms.get(room_id)
        if room is None or room.encrypted or room_id in self._plain:
            return
        if not await self._is_encrypted(room_id):
            self._plain.add(room_id)
            return
        room.encrypted = True
        self.encrypted_rooms.add(room_id)
        if self.store is not None:
            self.store.save_encrypted_rooms({room_id})

    async def _give_room_key_to_late_devices(self, room_id: str) -> None:
        """Reach the devices that did not get the current room key.

        nio claims a device's one-time key once, when the room key goes out; a device whose
        claim failed then (its homeserver unreachable, no one-time key left), or whose key
        delivery failed, never gets this room key, and its owner cannot read anything the bot
        says until the key changes. Before each message: claim again for devices without a
        session (at most once a minute each); if any such device can be reached now, start a
        new room key, which nio shares with everyone, them included.
        """
        olm = self.olm
        room = self.rooms.get(room_id)
        if olm is None or room is None or not room.encrypted:
            return
        session = olm.outbound_group_sessions.get(room_id)
        if session is None or not session.shared:
            return  # nio is about to share it, claiming what is missing itself
        now = asyncio.get_running_loop().time()
        reachable = 0
        to_claim: dict[str, list[str]] = {}
        claimed: list[Any] = []
        for user_id in room.users:
            for device in self.device_store.active_user_devices(user_id):
                key = (user_id, device.id)
                if (
                    device.id == self.device_id
                    or device.blacklisted  # refused on purpose: it never gets keys
                    or key in session.users_shared_with
                    or key in session.users_ignored
                ):
                    continue
                if olm.session_store.get(device.curve25519) is not None:
                    reachable += 1
                elif now - self._claimed_at.get(key, -LATE_CLAIM_INTERVAL_S) >= (
                    LATE_CLAIM_INTERVAL_S
                ):
                    to_claim.setdefault(user_id, []).append(device.id)
                    claimed.append(device)
                    self._claimed_at[key] = now
        if to_claim:
            with contextlib.suppress(Exception):  # best effort: never fail the message for it
                await self.keys_claim(to_claim)
            reachable += sum(1 for d in claimed if olm.session_store.get(d.curve25519))
        if reachable:
            logger.info(
                "New room key for %s: %d device(s) without the last one can be reached now",
                room_id,
                reachable,
            )
            olm.rotate_outbound_group_session(room_id)

    async def share_group_session(
        self, room_id: str, ignore_unverified_devices: bool = False
    ) -> Any:
        """Share the room key, then tell the devices we refused it to why (``m.unverified``).

        Their client (Element) then shows "the sender's device has not shared the key with
        you because your device is not verified" instead of a bare decryption failure: the
        only plain-words channel to a device that cannot read our messages.
        """
        response = await super().share_group_session(room_id, ignore_unverified_devices)
        with contextlib.suppress(Exception):  # best effort: never fail the message for it
            await self._send_withheld(room_id)
        return response

    async def _send_withheld(self, room_id: str) -> None:
        room = self.rooms.get(room_id)
        session = self.olm.outbound_group_sessions.get(room_id) if self.olm else None
        if room is None or session is None:
            return
        messages: dict[str, dict[str, Any]] = {}
        for user_id in room.users:
            for device in self.device_store.active_user_devices(user_id):
                if device.blacklisted:
                    messages.setdefault(user_id, {})[device.id] = withheld_content(
                        room_id, session.id, self.olm.account.identity_keys["curve25519"]
                    )
        if not messages:
            return
        request = requests.send_to_device(WITHHELD_TYPE, messages)
        status, _ = await NioJson(self).request_json(*request)
        if status != 200:
            logger.info("Could not send withheld notices in %s (HTTP %d)", room_id, status)

    async def know_joined_rooms(self) -> int | None:
        """Register every room the bot is joined to, without its state; returns how many were
        added, or None when the homeserver would not list them.

        For any start: asking for the full state instead makes the homeserver build the
        state of every room the bot sits in (minutes at thousands of rooms). Members are
        fetched before a message goes out (`members_synced` stays False). Encryption comes
        from nio's store, which lists every room the bot has seen encrypted; a room missing
        there is asked about before the bot's first message to it (`confirm_encryption`).
        """
        try:
            response = await self.joined_rooms()
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("Could not list the joined rooms: %s", type(exc).__name__)
            return None
        if not isinstance(response, JoinedRoomsResponse):
            logger.warning("Could not list the joined rooms: %s", response)
            return None
        new = [room_id for room_id in response.rooms if room_id not in self.rooms]
        for room_id in new:
            self.rooms[room_id] = MatrixRoom(room_id, self.user_id, room_id in self.encrypted_rooms)
        return len(new)

    async def sweep_invites(self, timeout: float = INVITE_SWEEP_TIMEOUT_S) -> int | None:
        """After a cold start: read the pending invitations with one initial sync
        (`INVITE_SWEEP_FILTER`) and hand them to nio as if its own sync had brought them.
        Returns how many there were, None when the homeserver did not answer.

        Slow at thousands of rooms (the homeserver builds an entry for each), so it runs in
        the background, once, with a long timeout of its own.
        """
        path = build_path(["sync"], {"filter": json.dumps(INVITE_SWEEP_FILTER), "timeout": "0"})
        token = self.access_token
        try:  # a sync: outside the request gate, like nio's own
            status, body = await send_json(self, "GET", path, None, token, timeout=timeout)
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("Could not read the pending invitations: %s", type(exc).__name__)
            return None
        if status != 200:
            logger.warning("Could not read the pending invitations (HTTP %d)", status)
            return None
        invites = (body.get("rooms") or {}).get("invite") or {}
        response = SyncResponse.from_dict(
            {"next_batch": body.get("next_batch", ""), "rooms": {"invite": invites}}
        )
        if not isinstance(response, SyncResponse):
            logger.warning("Could not read the pending invitations: %s", response)
            return None
        await apply_invites(self, response)
        return len(response.rooms.invite)

    async def _is_encrypted(self, room_id: str) -> bool:
        """Whether the room has ``m.room.encryption`` (True unless the homeserver says no)."""
        status, answer = await NioJson(self).request_json(*requests.room_encryption(room_id))
        if status == 404 and answer.get("errcode") == "M_NOT_FOUND":
            return False
        if status != 200:
            logger.warning(
                "Could not read the encryption of %s (HTTP %d); taking it as encrypted",
                room_id,
                status,
            )
        return True

    async def keys_query(self) -> Any:
        """Query outdated device lists; nothing (None) when none is left to query.

        nio raises LocalProtocolError then, and its sync loop dies of it whenever another
        task's query (ours before a send) has just answered the same question.
        """
        user_list = self.users_for_key_query
        if not user_list:
            return None
        method, path, data = Api.keys_query(self.access_token, user_list)
        response = await send_parsed(self, RawKeysQueryResponse, method, path, data)
        if isinstance(response, RawKeysQueryResponse) and self.on_keys_query is not None:
            self.on_keys_query(response.raw)
        return response


def withheld_content(room_id: str, session_id: str, sender_key: str) -> Json:
    """``m.room_key.withheld`` for a device we do not trust (its owner did not cross-sign it)."""
    return {
        "algorithm": "m.megolm.v1.aes-sha2",
        "room_id": room_id,
        "session_id": session_id,
        "sender_key": sender_key,
        "code": "m.unverified",
        "reason": "The bot only shares keys with sessions verified by their owner",
    }
