"""What the expiry engine needs from Matrix and from its homeserver's admin API.

The engine is written against these small interfaces; `bot.expiry.nio_matrix` implements
`ExpiryMatrix` on the shell's matrix-nio client and `bot.expiry.admin` implements
`HomeserverAdmin` over HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.ids import EventId, RoomId, UserId


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """What the engine keeps of a timeline event: ids, time, kind - never its content."""

    event_id: EventId
    origin_server_ts: int
    event_type: str
    is_state: bool
    redacted: bool = False
    media: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a room's history read backwards: newest event first."""

    events: Sequence[TimelineEvent]
    end: str | None
    """Token to read further back, or None at the start of the (retained) history."""


@dataclass(frozen=True, slots=True)
class RedactFailure:
    """Why the homeserver did not redact. ``errcode`` None means a transport failure."""

    errcode: str | None
    http_status: int | None
    retry_after_ms: int | None = None
    message: str = ""


class MatrixUnavailableError(Exception):
    """The homeserver could not answer a read (history page); try again later."""

    def __init__(
        self, message: str, retry_after_ms: int | None = None, errcode: str | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms
        self.errcode = errcode


class ExpiryMatrix(Protocol):
    """The bot's Matrix client as the engine uses it."""

    @property
    def user_id(self) -> UserId: ...

    async def redact(self, room_id: RoomId, event_id: EventId, txn_id: str) -> RedactFailure | None:
        """Redact an event; None on success. Never raises for server or network errors."""
        ...

    async def history(self, room_id: RoomId, from_token: str | None, limit: int) -> Page:
        """Read backwards from ``from_token`` (None: from the newest event).

        Raises:
            MatrixUnavailableError: the page could not be read now.
        """
        ...


class AdminError(Exception):
    """The homeserver's admin API refused or failed (message is for the operator)."""


class HomeserverAdmin(Protocol):
    """The admin API calls of the bot's own homeserver that expiry uses."""

    async def exempt_from_rate_limits(self, user_id: UserId) -> None: ...

    async def delete_media(self, server_name: str, media_id: str) -> None: ...

    async def purge_room(self, room_id: RoomId) -> None: ...


__all__ = [
    "AdminError",
    "ExpiryMatrix",
    "HomeserverAdmin",
    "MatrixUnavailableError",
    "Page",
    "RedactFailure",
    "TimelineEvent",
    "UserId",
]
