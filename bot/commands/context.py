"""The contract between the commands and the bot's Matrix shell.

Commands never touch matrix-nio: they call `MatrixActions`, which the E2EE shell implements
and unit tests fake in memory. Everything here is types; no I/O.
"""

from __future__ import annotations

from collections.abc import Container, Sized
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from bot.ids import EventId, RoomId, UserId


class MatrixActionError(Exception):
    """A Matrix call failed (homeserver refused it, network error...).

    `message` is safe to show to the requester: it says what failed, never a token or content.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CreationRefused(MatrixActionError):
    """The homeserver answered a /createRoom with a refusal.

    When the request named people to invite, the room may exist all the same: Synapse makes
    the room first and invites afterwards, one by one, and fails the whole request on the
    first refused invitation. ``room_id`` is that room, when the request made one.
    ``request_over``: the homeserver itself answered (a 4xx), so nothing more will come of
    the request; after a 5xx (possibly a proxy giving up while the homeserver works on) a
    room may still appear.
    """

    def __init__(self, message: str, *, request_over: bool, room_id: RoomId | None = None) -> None:
        super().__init__(message)
        self.request_over = request_over
        self.room_id = room_id


class MatrixActions(Protocol):
    """What commands may do on Matrix. Implemented by the nio shell; faked in unit tests.

    Every method raises `MatrixActionError` on failure.
    """

    @property
    def user_id(self) -> UserId:
        """The bot's own Matrix ID."""
        ...

    @property
    def server_name(self) -> str:
        """The bot's homeserver name, e.g. ``localhost:8481``."""
        ...

    async def send_notice(self, room_id: RoomId, body: str, html: str | None = None) -> EventId:
        """Send an m.notice (encrypted when the room is, i.e. always in practice)."""
        ...

    async def create_room(self, body: dict[str, Any]) -> RoomId:
        """POST /createRoom with `body` (built by a pure function of the commands).

        Returns once the room is ready for encrypted messages (synced, members tracked).
        Raises `CreationRefused` when the homeserver answers with an error; when `body`
        names people to invite, its ``room_id`` is the room the request made before an
        invitation was refused (found by the request mark of `body`'s creation content).
        """
        ...

    async def invite(self, room_id: RoomId, user_id: UserId) -> None: ...

    async def kick(self, room_id: RoomId, user_id: UserId, reason: str) -> None: ...

    async def leave(self, room_id: RoomId) -> None: ...

    async def joined_members(self, room_id: RoomId) -> list[UserId]: ...

    async def power_level(self, room_id: RoomId, user_id: UserId) -> int: ...

    async def put_state(
        self,
        room_id: RoomId,
        event_type: str,
        content: dict[str, Any],
        state_key: str = "",
    ) -> EventId: ...


@runtime_checkable
class ListsInvitedMembers(Protocol):
    """Optional addition to `MatrixActions`: who is invited but has not joined yet.

    ``!case close`` uses it, when the shell provides it, to revoke pending invitations too,
    so nobody can join a closed case later.
    """

    async def invited_members(self, room_id: RoomId) -> list[UserId]: ...


@dataclass(frozen=True)
class IncomingMessage:
    """A decrypted text message addressed to the bot (or in a room it is in)."""

    room_id: RoomId
    event_id: EventId
    sender: UserId
    body: str  # decrypted plain text: never logged, never stored
    origin_server_ts: int
    is_direct: bool  # DM with the bot (2 members) vs any other room


@dataclass(frozen=True)
class CommandSettings:
    """The federation's policy as the commands need it (built by the shell from BotConfig).

    Attributes:
        default_ttl_seconds: message lifetime of a new case room when no ``ttl=`` is given.
        min_ttl_seconds / max_ttl_seconds: the federation's bounds for ``ttl=`` and
            ``!expire``; they match the homeservers' retention bounds.
        member_servers: servers whose practitioners may use the bot and be invited to cases
            (a set, or the live list that follows the federation registry: `bot.members`).
        max_invitees: how many people one ``!case new`` may invite (keeps a typo from
            spamming a whole directory page).
    """

    default_ttl_seconds: int
    min_ttl_seconds: int
    max_ttl_seconds: int
    member_servers: Container[str]
    max_invitees: int = 20

    def __post_init__(self) -> None:
        if not 0 < self.min_ttl_seconds <= self.default_ttl_seconds <= self.max_ttl_seconds:
            raise ValueError(
                "message lifetimes must satisfy 0 < min <= default <= max "
                f"(got min={self.min_ttl_seconds}, default={self.default_ttl_seconds}, "
                f"max={self.max_ttl_seconds})"
            )
        if isinstance(self.member_servers, Sized) and not len(self.member_servers):
            raise ValueError("member_servers must list at least the bot's own homeserver")
