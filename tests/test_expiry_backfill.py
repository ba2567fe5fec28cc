"""The back-fill stop rule, without a homeserver: what a history page adds to the schedule."""

from __future__ import annotations

from bot.expiry.backfill import plan_page
from bot.expiry.ports import TimelineEvent
from bot.ids import EventId, RoomId

ROOM = RoomId("!r:hs")


def ev(event_id: str, ts: int, type_: str = "m.room.encrypted", **kw: bool) -> TimelineEvent:
    return TimelineEvent(
        EventId(event_id), ts, type_, kw.get("state", False), kw.get("redacted", False)
    )


# Newest first, as /messages?dir=b returns them.
PAGE = [
    ev("$new", 900),
    ev("$member", 850, "m.room.member", state=True),
    ev("$known-recent", 800),
    ev("$gap", 700),
    ev("$already-redacted", 650, redacted=True),
    ev("$known-old", 100),
    ev("$older", 50),
]
KNOWN = {"$known-recent": 800, "$known-old": 100}


def ids(plan_entries: list) -> list[str]:  # type: ignore[type-arg]
    return [e.event_id for e in plan_entries]


def test_a_live_gap_stops_at_the_first_known_event() -> None:
    plan = plan_page(ROOM, PAGE, KNOWN, until_ts=None, lifetime_ms=10_000, now=1_000)
    assert ids(plan.entries) == ["$new"]  # state and known events are not scheduled
    assert plan.stop
    assert plan.entries[0].due_ms == 900 + 10_000


def test_the_restart_catch_up_reads_past_recent_known_events_to_the_window_start() -> None:
    # A gap noted just before a crash ($gap) is older than events persisted after it.
    plan = plan_page(ROOM, PAGE, KNOWN, until_ts=500, lifetime_ms=10_000, now=1_000)
    assert ids(plan.entries) == ["$new", "$gap"]
    assert plan.stop  # at $known-old, older than the window start


def test_reading_goes_on_when_nothing_known_is_met() -> None:
    plan = plan_page(ROOM, PAGE[:4], {}, until_ts=None, lifetime_ms=10_000, now=1_000)
    assert ids(plan.entries) == ["$new", "$known-recent", "$gap"]
    assert not plan.stop


def test_closing_schedules_everything_now_and_never_stops_early() -> None:
    plan = plan_page(ROOM, PAGE, KNOWN, until_ts=None, lifetime_ms=None, now=1_000)
    assert ids(plan.entries) == ["$new", "$gap", "$older"]
    assert {e.due_ms for e in plan.entries} == {1_000}
    assert not plan.stop
