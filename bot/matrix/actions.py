"""`MatrixActions` (what the commands do on Matrix) over the bot's running nio client.

Every nio call's answer is checked against `ErrorResponse`; failures become
`MatrixActionError` with a message a doctor can read (never a token, never content).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from nio import (
    ErrorResponse,
    JoinedMembersResponse,
    JoinedRoomsResponse,
    OlmUnverifiedDeviceError,
    RoomCreateResponse,
    RoomGetStateEventResponse,
    RoomPutStateResponse,
    RoomSendResponse,
)

from bot.commands.context import CreationRefused, MatrixActionError
from bot.crypto.device_trust import DeviceTrust
from bot.crypto.signing import Json
from bot.ids import EventId, RoomId, UserId, server_of
from bot.matrix import requests
from bot.matrix.client import CaduceeClient
from bot.matrix.homeserver import NioJson
from bot.matrix.nio_private import send_parsed
from bot.matrix.power_levels import CREATOR_POWER, is_privileged_creator, power_level_of
from bot.matrix.requests import body_text

logger = logging.getLogger(__name__)

ROOM_READY_TIMEOUT = 30.0


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
        await client.confirm_encryption(room_id)  # before the members are read for the key
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
        request = requests.create_room(body)
        known_before = set(self._client.rooms)
        response = await send_parsed(
            self._client, RoomCreateResponse, request.method, request.path, body_text(request)
        )
        if not isinstance(response, RoomCreateResponse):
            logger.warning("Room creation failed: %s", _error_text(response))
            status = getattr(getattr(response, "transport_response", None), "status", 500)
            raise CreationRefused(
                f"the room could not be created ({_error_text(response)})",
                request_over=isinstance(status, int) and status < 500,
                room_id=await self._room_made_by(body, known_before)
                if body.get("invite")
                else None,
            )
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
        request = requests.room_create_event(room_id)
        status, answer = await NioJson(self._client).request_json(*request)
        if status != 200:
            raise MatrixActionError(f"could not read the room's creation (HTTP {status})")
        self._create_events[room_id] = answer
        return answer

    async def _room_made_by(self, body: dict[str, Any], known_before: set[str]) -> RoomId | None:
        """The room a refused /createRoom made before failing, if any: among the rooms the
        homeserver says the bot is in that the bot did not know before the request (a few
        at most, however many rooms the bot is in), the one with this request's mark."""
        from bot.cases.resume import REQUEST_MARK, find_marked_room

        mark = (body.get("creation_content") or {}).get(REQUEST_MARK)
        if not isinstance(mark, str):
            return None
        response = await self._client.joined_rooms()
        if not isinstance(response, JoinedRoomsResponse):
            logger.warning("Could not list the bot's rooms: %s", _error_text(response))
            return None
        new_rooms = [r for r in response.rooms if r not in known_before]
        return await find_marked_room(new_rooms, self._create_event, EventId(mark), self.user_id)

    async def find_created_room(
        self, request: EventId, skip: Collection[str] = ()
    ) -> RoomId | None:
        """The case room created for the ``request`` command event (`bot.cases.resume`),
        among the rooms the bot is in but for ``skip``."""
        from bot.cases.resume import find_marked_room

        skipped = set(skip)
        rooms = [r for r in self._client.rooms if r not in skipped]
        return await find_marked_room(rooms, self._create_event, request, self.user_id)

    async def invited_members(self, room_id: RoomId) -> list[UserId]:
        """Who is invited but has not joined (``!case close`` revokes these invitations)."""
        request = requests.invited_members(room_id)
        status, answer = await NioJson(self._client).request_json(*request)
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
