"""The nio side of the bot: a client that keeps the cross-signing data nio drops, and the
`MatrixActions` implementation the commands call.

Every nio call's answer is checked against `ErrorResponse`; failures become
`MatrixActionError` with a message a doctor can read (never a token, never content).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from nio import (
    AsyncClient,
    ErrorResponse,
    JoinedMembersResponse,
    KeysQueryResponse,
    OlmUnverifiedDeviceError,
    RoomCreateResponse,
    RoomGetStateEventResponse,
    RoomPutStateResponse,
    RoomSendResponse,
)
from nio.api import Api

from bot.aio import wait_event
from bot.commands.context import MatrixActionError
from bot.crypto.bootstrap import NioJson
from bot.crypto.device_trust import DeviceTrust
from bot.crypto.signing import Json
from bot.ids import EventId, RoomId, UserId, server_of
from bot.sync_filter import LeanSync
from bot.throttle import RequestGate
from bot.unreadable import WITHHELD_TYPE

logger = logging.getLogger(__name__)

ROOM_READY_TIMEOUT = 30.0
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


class CaduceeClient(LeanSync, AsyncClient):  # type: ignore[misc]
    """An AsyncClient whose key queries also feed our cross-signing trust decisions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_keys_query: Callable[[Json], object] | None = None
        self._claimed_at: dict[tuple[str, str], float] = {}
        self.gate = RequestGate()

    async def send(
        self, method: str, path: str, *args: Any, **kwargs: Any
    ) -> aiohttp.ClientResponse:
        """Every request but the long-polling sync goes through the bot's `RequestGate`."""
        call = functools.partial(super().send, method, path, *args, **kwargs)
        return await (call() if _SYNC_PATH.match(path) else self.gate.through(call))

    async def room_send(self, room_id: str, *args: Any, **kwargs: Any) -> Any:
        await self._give_room_key_to_late_devices(room_id)
        return await super().room_send(room_id, *args, **kwargs)

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
        path = Api._build_path(["sendToDevice", WITHHELD_TYPE, uuid.uuid4().hex])
        status, _ = await NioJson(self).request_json("PUT", path, {"messages": messages})
        if status != 200:
            logger.info("Could not send withheld notices in %s (HTTP %d)", room_id, status)

    async def keys_query(self) -> Any:
        """Query outdated device lists; nothing (None) when none is left to query.

        nio raises LocalProtocolError then, and its sync loop dies of it whenever another
        task's query (ours before a send) has just answered the same question.
        """
        user_list = self.users_for_key_query
        if not user_list:
            return None
        method, path, data = Api.keys_query(self.access_token, user_list)
        response = await self._send(RawKeysQueryResponse, method, path, data)
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


def _error_text(response: Any) -> str:
    code = getattr(response, "status_code", None) or "error"
    message = getattr(response, "message", "") or ""
    return f"{code}: {message}"[:300]


class NioActions:
    """`MatrixActions` over a running bot client.

    Args:
        client: the logged-in client (its sync loop runs elsewhere).
        trust: device trust, consulted before every encrypted send.
        wait_for_room: resolves once the sync loop has seen a room (new rooms are unknown to
            nio until then, and nio cannot encrypt into a room it has not synced).
    """

    def __init__(
        self,
        client: CaduceeClient,
        trust: DeviceTrust | None,
        wait_for_room: Callable[[str, float], Awaitable[bool]],
        *,
        ignore_unverified_devices: bool,
    ) -> None:
        self._client = client
        self._trust = trust
        self._wait_for_room = wait_for_room
        self._ignore_unverified = ignore_unverified_devices
        self._create_events: dict[str, Json] = {}

    @property
    def user_id(self) -> UserId:
        return UserId(self._client.user_id)

    @property
    def server_name(self) -> str:
        return server_of(self._client.user_id)

    async def send_notice(self, room_id: RoomId, body: str, html: str | None = None) -> EventId:
        content: dict[str, Any] = {"msgtype": "m.notice", "body": body}
        if html is not None:
            content.update(format="org.matrix.custom.html", formatted_body=html)
        return await self.send_event(room_id, "m.room.message", content)

    async def send_event(
        self, room_id: RoomId, event_type: str, content: Json, *, txn_id: str | None = None
    ) -> EventId:
        """Send one room event, encrypted when the room is; the only path out for content.

        ``txn_id``: a transaction id fixed by the caller, so that the homeserver keeps one
        event however many times the same send is repeated (by a restarted bot); a fresh one
        otherwise.
        """
        client = self._client
        if room_id not in client.rooms and not await self._wait_for_room(
            room_id, ROOM_READY_TIMEOUT
        ):
            raise MatrixActionError("the bot is not in that room")
        await self._refresh_keys(room_id)
        for _attempt in range(3):
            try:
                response = await client.room_send(
                    room_id,
                    event_type,
                    content,
                    tx_id=txn_id,
                    ignore_unverified_devices=self._ignore_unverified,
                )
                break
            except OlmUnverifiedDeviceError as exc:
                # A device appeared without passing through our judgement: refuse it keys.
                if self._trust is None:
                    raise MatrixActionError("a device in the room could not be checked") from exc
                self._trust.blacklist_unjudged([exc.device.user_id])
        else:
            raise MatrixActionError("could not encrypt for the room's devices")
        if not isinstance(response, RoomSendResponse):
            logger.warning("Sending to %s failed: %s", room_id, _error_text(response))
            raise MatrixActionError(f"the homeserver refused the message ({_error_text(response)})")
        return EventId(response.event_id)

    async def _refresh_keys(self, room_id: RoomId) -> None:
        """Query outdated device lists now (nio's sync loop would only do it after its
        long poll), so a doctor's new device gets this message's key."""
        client = self._client
        room = client.rooms.get(room_id)
        if room is None or not room.encrypted or client.olm is None:
            return
        if not room.members_synced:  # lazy loading: fetch the whole list before judging
            await client.joined_members(room_id)  # nio tries again before sharing if this fails
        if client.should_query_keys:
            await client.keys_query()
        if self._trust is not None:
            self._trust.blacklist_unjudged(list(room.users))

    async def create_room(self, body: dict[str, Any]) -> RoomId:
        path = Api._build_path(["createRoom"])
        response = await self._client._send(RoomCreateResponse, "POST", path, json.dumps(body))
        if not isinstance(response, RoomCreateResponse):
            logger.warning("Room creation failed: %s", _error_text(response))
            raise MatrixActionError(f"the room could not be created ({_error_text(response)})")
        room_id = RoomId(response.room_id)
        if not await self._wait_for_room(room_id, ROOM_READY_TIMEOUT):
            raise MatrixActionError("the new room did not appear in time; try again")
        return room_id

    async def invite(self, room_id: RoomId, user_id: UserId) -> None:
        response = await self._client.room_invite(room_id, user_id)
        self._check(response, f"could not invite {user_id}")

    async def kick(self, room_id: RoomId, user_id: UserId, reason: str) -> None:
        response = await self._client.room_kick(room_id, user_id, reason)
        self._check(response, f"could not remove {user_id}")

    async def leave(self, room_id: RoomId) -> None:
        response = await self._client.room_leave(room_id)
        self._check(response, "could not leave the room")

    async def joined_members(self, room_id: RoomId) -> list[UserId]:
        response = await self._client.joined_members(room_id)
        if not isinstance(response, JoinedMembersResponse):
            raise MatrixActionError(f"could not list the members ({_error_text(response)})")
        return [UserId(m.user_id) for m in response.members]

    async def power_level(self, room_id: RoomId, user_id: UserId) -> int:
        create = await self._create_event(room_id)
        if is_privileged_creator(create.get("content"), create, user_id):
            return CREATOR_POWER
        response = await self._client.room_get_state_event(room_id, "m.room.power_levels")
        if not isinstance(response, RoomGetStateEventResponse):
            raise MatrixActionError(f"could not read the power levels ({_error_text(response)})")
        return power_level_of(response.content, user_id)

    async def _create_event(self, room_id: RoomId) -> Json:
        """The room's ``m.room.create`` event with its sender (never changes: cached)."""
        cached = self._create_events.get(room_id)
        if cached is not None:
            return cached
        path = Api._build_path(
            ["rooms", room_id, "state", "m.room.create", ""], {"format": "event"}
        )
        status, answer = await NioJson(self._client).request_json("GET", path, None)
        if status != 200:
            raise MatrixActionError(f"could not read the room's creation (HTTP {status})")
        self._create_events[room_id] = answer
        return answer

    async def find_created_room(self, request: EventId) -> RoomId | None:
        """The case room created for the ``request`` command event (`bot.cases.resume`)."""
        from bot.cases.resume import find_marked_room

        return await find_marked_room(list(self._client.rooms), self._create_event, request)

    async def invited_members(self, room_id: RoomId) -> list[UserId]:
        """Who is invited but has not joined (``!case close`` revokes these invitations)."""
        path = Api._build_path(["rooms", room_id, "members"], {"membership": "invite"})
        status, answer = await NioJson(self._client).request_json("GET", path, None)
        if status != 200:
            raise MatrixActionError(f"could not list the invited members (HTTP {status})")
        chunk = answer.get("chunk")
        events = chunk if isinstance(chunk, list) else []
        return [
            UserId(e["state_key"])
            for e in events
            if isinstance(e, dict)
            and isinstance(e.get("state_key"), str)
            and (e.get("content") or {}).get("membership") == "invite"
        ]

    async def put_state(
        self,
        room_id: RoomId,
        event_type: str,
        content: dict[str, Any],
        state_key: str = "",
    ) -> EventId:
        response = await self._client.room_put_state(room_id, event_type, content, state_key)
        if not isinstance(response, RoomPutStateResponse):
            raise MatrixActionError(f"could not set {event_type} ({_error_text(response)})")
        return EventId(response.event_id)

    @staticmethod
    def _check(response: Any, what: str) -> None:
        if isinstance(response, ErrorResponse):
            logger.warning("%s: %s", what, _error_text(response))
            raise MatrixActionError(f"{what} ({_error_text(response)})")


CREATOR_POWER = 2**53
"""What "unlimited power" is reported as for the creators of room version 12+ rooms."""

_PRIVILEGED_CREATOR_VERSIONS = frozenset({"12"})


def is_privileged_creator(content: Any, source: Any, user_id: str) -> bool:
    """Whether `user_id` created (or co-created) a room whose version gives creators
    unlimited power (v12: creators are not listed in ``m.room.power_levels`` at all)."""
    if not isinstance(content, dict) or content.get("room_version") not in (
        _PRIVILEGED_CREATOR_VERSIONS
    ):
        return False
    creators = {source.get("sender")} if isinstance(source, dict) else set()
    extra = content.get("additional_creators")
    if isinstance(extra, list):
        creators.update(x for x in extra if isinstance(x, str))
    return user_id in creators


def power_level_of(content: Any, user_id: str) -> int:
    """A user's power level from ``m.room.power_levels`` content (spec defaults when absent)."""
    if not isinstance(content, dict):
        return 0
    users = content.get("users")
    if isinstance(users, dict) and isinstance(users.get(user_id), int):
        return int(users[user_id])
    default = content.get("users_default", 0)
    return int(default) if isinstance(default, int) else 0


async def wait_until(
    predicate: Callable[[], bool], generation: Callable[[], asyncio.Event], timeout: float
) -> bool:
    """Wait until `predicate` holds, re-checking after each sync; False on timeout.

    `generation()` returns the event the *next* sync will set (the sync loop replaces it
    each time), so no sync between the check and the wait can be missed.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        event = generation()
        if predicate():
            return True
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        await wait_event(event, remaining)
