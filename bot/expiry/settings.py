"""The expiry engine's tuning and where it reads room lifetimes from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.ids import RoomId
from bot.store import CaseRoom


class CaseSource(Protocol):
    """Where room lifetimes come from (`bot.store.BotStore` fits): the case rooms."""

    async def get_case(self, room_id: RoomId) -> CaseRoom | None: ...

    async def open_cases(self) -> Sequence[CaseRoom]: ...

    async def set_case_ttl(self, room_id: RoomId, ttl_seconds: int) -> bool: ...


@dataclass(frozen=True)
class ExpirySettings:
    """Tuning of the engine. Defaults suit a federation of a few hundred case rooms.

    Attributes:
        concurrency: redactions in flight at once (the homeserver is exempt from rate limits).
        request_timeout_s: a redaction not answered in this time is retried soon after.
        idle_poll_s: longest sleep when nothing is due (new events wake the worker anyway).
        history_page: events per /messages page when back-filling.
        backfill_concurrency: rooms back-filled at once.
        max_backfill_pages: a gap deeper than this is logged and given up.
        max_refusals: a redaction refused this many times (e.g. the bot lost its power in
            the room) is given up and logged; rate limits and outages never give up.
        delete_media: delete attachments stored on the bot's homeserver when they expire.
        keep_done_days: finished entries are forgotten after this many days.
        negative_cache_s: how long a room found not to be a case is not looked up again.
        park_s: how long events of a room that is not (yet) a case are kept in memory in
            case it becomes one (the case is recorded just after its room is created).
    """

    concurrency: int = 16
    request_timeout_s: float = 20.0
    idle_poll_s: float = 5.0
    history_page: int = 100
    backfill_concurrency: int = 8
    max_backfill_pages: int = 500
    max_refusals: int = 12
    delete_media: bool = False
    keep_done_days: int = 7
    negative_cache_s: float = 2.0
    park_s: float = 60.0
