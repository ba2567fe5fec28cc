"""What the bot asks of each sync, and what it keeps of it: sized for thousands of rooms.

The bot reads commands and schedules expiry from the timeline, shares room keys with the
members of encrypted rooms, and answers to-device key traffic. It needs no presence, no
typing, no receipts, no account data of rooms, and not the full member list of every room
at every start. So:

- members are lazy-loaded: a sync carries only the members who sent something in it. Before
  a message goes out, the bot fetches the room's joined members (`members_synced`), so the
  room key still reaches everyone; a gappy (limited) timeline may hide joins and leaves, so
  it marks the room's members as unknown again (`forget_members_after_gaps`).
- the timeline is short: a gap is back-filled by the expiry engine, and a command older than
  the last few events of a sync is too old to answer anyway.
- a restart does not ask for every room's state again: the bot already knows which rooms are
  encrypted (nio keeps that list in its store) and reads the rest of a room's state when it
  needs it. A restart with its sync token syncs only what changed (`full_state` off) and
  lists the joined rooms with one `/joined_rooms`; a start without a token (a cold start)
  first syncs no room at all (`START_FILTER`), and reads the pending invitations once, in
  the background (`INVITE_SWEEP_FILTER`).
- device-list changes are matched against the users whose devices the bot tracks (a set),
  not against every room's member list (nio's way: O(rooms) per changed user, and blind to
  members that lazy loading has not shown yet).

These are the pure decisions; `bot.matrix.nio_private.LeanSync` puts them in nio's sync steps.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from typing import Any

TIMELINE_LIMIT = 10

NOTHING: dict[str, Any] = {"not_types": ["*"]}

SYNC_FILTER: dict[str, Any] = {
    "presence": NOTHING,
    "account_data": NOTHING,
    "room": {
        "state": {"lazy_load_members": True},
        "timeline": {"limit": TIMELINE_LIMIT, "lazy_load_members": True},
        "ephemeral": NOTHING,
        "account_data": NOTHING,
    },
}
"""The filter every sync of the bot carries (to-device messages and device lists are never
filtered: they carry the keys)."""

START_FILTER: dict[str, Any] = {
    "presence": NOTHING,
    "account_data": NOTHING,
    "room": {"rooms": []},
}
"""The first sync of a bot without a sync token (a cold start): no room at all, so the
homeserver skips building an entry for each of thousands of rooms (55 s at 1 250 rooms on a
loaded 2-core machine) and answers with a sync position, the to-device messages and
nothing else. The joined rooms are listed with `/joined_rooms`, as after any restart; what
happened before is read back where it matters (the expiry engine's catch-up reads every
open case from its own records at start); invitations that came while the bot had no token
are found by `INVITE_SWEEP_FILTER`, in the background."""

INVITE_SWEEP_FILTER: dict[str, Any] = {
    "presence": NOTHING,
    "account_data": NOTHING,
    "room": {
        "state": {"types": [], "lazy_load_members": True},
        "timeline": {"limit": 1, "lazy_load_members": True},
        "ephemeral": NOTHING,
        "account_data": NOTHING,
    },
}
"""One initial sync after a cold start, read for its invitations only: pending invitations
appear in no incremental sync and no other endpoint lists them. As light as Synapse allows:
no state, one event per room (a limit of 0 would mean no limit at all), members
lazy-loaded (without it Synapse reads every member of every room)."""


def changed_tracked_users(
    changed: Iterable[str], left: Iterable[str], *tracked: Container[str]
) -> set[str]:
    """Whose device lists to query again: the changed (or gone) users the bot tracks.

    A tracked user is one whose devices the bot has queried because they share an encrypted
    room with it; the others are queried on first need, when their room's members are read.
    """
    return {
        user
        for group in (changed, left)
        for user in group
        if any(user in known for known in tracked)
    }


def forget_members_after_gaps(rooms: Mapping[str, Any], joined: Mapping[str, Any]) -> list[str]:
    """Mark the rooms whose timeline was cut as having unknown members (fetched again before
    the next room key goes out); returns their ids."""
    cut = []
    for room_id, info in joined.items():
        room = rooms.get(room_id)
        if room is not None and info.timeline.limited:
            room.members_synced = False
            cut.append(room_id)
    return cut
