"""Distinct types for Matrix identifiers, shared by the bot's shell, commands and store.

They are plain strings at run time; the types only stop a room id being passed where a user id
is expected (mypy catches it). Validation lives in the parsers that build them from user input.
"""

from __future__ import annotations

import re
from typing import NewType

from bridge.guard.ids import server_part

UserId = NewType("UserId", str)
"""A Matrix user id, ``@localpart:server``."""

RoomId = NewType("RoomId", str)
"""A Matrix room id, ``!opaque:server``."""

EventId = NewType("EventId", str)
"""A Matrix event id, ``$opaque`` (room versions 4+)."""


USER_ID_RE = re.compile(r"^@[a-z0-9._=/+-]+:[A-Za-z0-9.-]+(?::[0-9]{1,5})?$")
"""A user id as the bot accepts one: historical localparts aside, what Synapse lets register."""


def is_user_id(value: str) -> bool:
    """Whether `value` is a Matrix user id (``@name:server``)."""
    return USER_ID_RE.match(value) is not None


def server_of(matrix_id: str) -> str:
    """The server part of a user or room id (everything after the first colon).

    Server names may carry a port (``localhost:8481``), hence the first colon, not the last.
    Returns "" when there is no colon, so callers treat malformed ids as foreign.
    """
    return server_part(matrix_id) or ""
