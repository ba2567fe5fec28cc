"""Reading back what sync skipped: which events of a history page to schedule, and when to
stop. Pure, so the stop rule - the part that decides whether anything is missed - is tested
without a homeserver."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot.expiry.policy import due_ms, is_expirable
from bot.expiry.ports import TimelineEvent
from bot.expiry.store import NewEntry
from bot.ids import RoomId


@dataclass(frozen=True)
class PagePlan:
    entries: list[NewEntry]
    """Events to schedule (expirable, not yet redacted, not yet known)."""
    stop: bool
    """True when the page reached what was already known: read no further back."""


def plan_page(
    room_id: RoomId,
    events: Sequence[TimelineEvent],
    known: Mapping[str, int],
    *,
    until_ts: int | None,
    lifetime_ms: int | None,
    now: int,
) -> PagePlan:
    """Plan one page of history read backwards (newest event first).

    Args:
        known: the page's events already scheduled → their origin_server_ts.
        until_ts: stop at a known event no newer than this; None: at any known event (a
            gap in a live sync ends where the schedule's knowledge begins). After a restart
            the catch-up passes the start of the lifetime window, so that a gap noted just
            before a crash - older than events persisted later - is read too.
        lifetime_ms: the room's lifetime; None means "due now" (closing a case): everything
            not yet known is scheduled and reading never stops early.
    """
    entries: list[NewEntry] = []
    for event in events:
        if event.event_id in known:
            if lifetime_ms is not None and (until_ts is None or known[event.event_id] <= until_ts):
                return PagePlan(entries, stop=True)
            continue
        if not is_expirable(event.event_type, event.is_state) or event.redacted:
            continue
        due = now if lifetime_ms is None else due_ms(event.origin_server_ts, lifetime_ms, now)
        entries.append(NewEntry(room_id, event.event_id, event.origin_server_ts, due, event.media))
    return PagePlan(entries, stop=False)
