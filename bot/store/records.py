"""What the store hands out: plain frozen records, detached from any database session."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bot.ids import RoomId, UserId


@dataclass(frozen=True, slots=True)
class CaseRoom:
    """A case room created by the bot. ``closed_ms`` is None while the case is open."""

    room_id: RoomId
    label: str
    creator: UserId
    ttl_seconds: int
    created_ms: int
    closed_ms: int | None = None

    @property
    def is_open(self) -> bool:
        return self.closed_ms is None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the audit trail: who ran which command, where, when, with what outcome."""

    ts_ms: int
    sender: UserId
    room_id: RoomId
    command: str
    outcome: str


class Claim(enum.Enum):
    """What `BotStore.claim_command` found for an event id."""

    NEW = "new"
    """First time seen: run it."""
    DONE = "done"
    """Already handled to the end: do nothing."""
    INTERRUPTED = "interrupted"
    """Claimed earlier but never finished: the bot stopped while running it."""
