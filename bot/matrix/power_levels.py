"""Who may do what in a room: the power-level rules the bot reads (pure, no I/O).

A user's level comes from ``m.room.power_levels``, except for the creators of a room whose
version gives them unlimited power (v12), who are not listed there at all.
"""

from __future__ import annotations

from typing import Any

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
