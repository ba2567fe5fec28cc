"""Message expiry: every message of a case room is redacted when the room's lifetime ends.

The shell feeds `ExpiryEngine` with timeline events and runs it; `!expire` changes a room's
lifetime; closing a case redacts everything and purges the room. `bot.expiry.nio_matrix` is how
the shell feeds it: every event is persisted before the sync token that delivered it is saved,
which is what makes ``kill -9`` lose nothing.
"""

from __future__ import annotations

from bot.expiry.engine import ExpiryEngine
from bot.expiry.ports import (
    AdminError,
    ExpiryMatrix,
    HomeserverAdmin,
    MatrixUnavailableError,
    Page,
    RedactFailure,
    TimelineEvent,
)
from bot.expiry.settings import CaseSource, ExpirySettings
from bot.expiry.store import ExpiryStore

__all__ = [
    "AdminError",
    "CaseSource",
    "ExpiryEngine",
    "ExpiryMatrix",
    "ExpirySettings",
    "ExpiryStore",
    "HomeserverAdmin",
    "MatrixUnavailableError",
    "Page",
    "RedactFailure",
    "TimelineEvent",
]
