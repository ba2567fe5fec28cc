"""The export's content, as plain records built from the room's decrypted events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RawEvent:
    """One ``m.room.message`` as the bot read it. ``content`` None: it could not decrypt."""

    event_id: str
    sender: str
    ts_ms: int
    content: dict[str, Any] | None


@dataclass(frozen=True)
class Attachment:
    name: str
    mimetype: str
    data: bytes | None  # None: announced but could not be downloaded or decrypted


@dataclass(frozen=True)
class Member:
    user_id: str
    name: str
    rpps: str | None


@dataclass(frozen=True)
class Message:
    """A message as filed: edits applied, the replied-to message named, unreadable marked."""

    event_id: str
    sender: str
    ts_ms: int
    text: str | None  # None: unreadable
    reply_to: str | None = None
    edited: bool = False
    attachment: Attachment | None = None

    @property
    def readable(self) -> bool:
        return self.text is not None


@dataclass(frozen=True)
class CaseExport:
    label: str
    room_id: str
    exported_ms: int
    requester: str
    members: list[Member]
    messages: list[Message] = field(default_factory=list)

    def member(self, user_id: str) -> Member:
        for m in self.members:
            if m.user_id == user_id:
                return m
        return Member(user_id, user_id, None)


UNREADABLE_FR_EN = "[message illisible par le bot / message the bot could not read]"
