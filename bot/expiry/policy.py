"""The expiry rules as pure functions: what expires, when, in which order, how to back off.

Everything the engine decides goes through here so it can be tested without a homeserver:
the engine (`bot.expiry.engine`) only moves data between Matrix, the database and these rules.
Times are integer milliseconds since the epoch, the unit of Matrix's ``origin_server_ts``.
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.durations import check_bounds
from bot.ids import EventId, RoomId

RETENTION_EVENT = "m.room.retention"

# A redaction removes content; redacting it would undo nothing and only add events.
NEVER_EXPIRE = frozenset({"m.room.redaction"})

BACKOFF_BASE_MS = 1_000
BACKOFF_CAP_MS = 5 * 60_000


def is_expirable(event_type: str, is_state: bool) -> bool:
    """Whether an event of this type is redacted when its room's lifetime passes.

    Every non-state event counts - text, files, images, reactions, edits, polls, calls, and
    events the bot cannot decrypt (``m.room.encrypted``) - whoever sent it, the bot
    included. State (membership, name, the retention policy itself) is what keeps the room
    working and is never redacted; redactions are never redacted.
    """
    return not is_state and event_type not in NEVER_EXPIRE


def due_ms(origin_server_ts: int, lifetime_ms: int, seen_ms: int | None = None) -> int:
    """When an event sent at ``origin_server_ts`` and first seen at ``seen_ms`` must be gone.

    The sender's server stamps ``origin_server_ts``; a server whose clock runs ahead would
    otherwise make its events outlive their lifetime, so the earlier of the two times counts.
    """
    start = origin_server_ts if seen_ms is None else min(origin_server_ts, seen_ms)
    return start + lifetime_ms


def lifetime_ms_within_bounds(seconds: int, min_seconds: int, max_seconds: int) -> int:
    """The lifetime in milliseconds, or `DurationError` naming the federation's bounds.

    The bounds are the homeservers' ``allowed_lifetime_min``/``max``: a room policy outside
    them would make Synapse's purge disagree with the bot's redactions.
    """
    return check_bounds(seconds, min_seconds, max_seconds) * 1000


# How long after the bot's redaction the homeservers may purge an event. Synapse withholds
# a redaction from clients once it no longer has the original event (measured: a member
# whose sync came after the purge never received the redaction and kept showing the
# message), so purging at the very moment the bot redacts loses redactions. Content is
# censored anyway 5-10 minutes after redaction (redaction_retention_period + censor job).
PURGE_MARGIN_MS = 10 * 60_000


def retention_content(lifetime_ms: int, margin_ms: int = PURGE_MARGIN_MS) -> dict[str, int]:
    """The ``m.room.retention`` content for a room lifetime: purge a margin after the bot's
    redaction, so members' clients receive the redaction before the original disappears."""
    return {"max_lifetime": lifetime_ms + margin_ms}


@dataclass(frozen=True, slots=True)
class Pending:
    """A scheduled redaction not yet acknowledged by the homeserver."""

    room_id: RoomId
    event_id: EventId
    origin_server_ts: int
    due_ms: int
    next_try_ms: int
    attempts: int = 0


def redaction_order(item: Pending) -> tuple[int, int, str, str]:
    """Sort key: most overdue first, then oldest first (ties broken by ids, for stability).

    After a crash or downtime every overdue event is redacted before any that falls due
    later, and among overdue ones the event that has outlived its lifetime longest goes first.
    """
    return (item.due_ms, item.origin_server_ts, item.room_id, item.event_id)


def ready(pending: Iterable[Pending], now_ms: int, limit: int | None = None) -> list[Pending]:
    """The pending redactions to attempt now (due and not backing off), in redaction order."""
    chosen = sorted((p for p in pending if p.next_try_ms <= now_ms), key=redaction_order)
    return chosen if limit is None else chosen[:limit]


def next_wake_ms(pending: Iterable[Pending]) -> int | None:
    """When the worker must look again: the earliest next attempt, or None if nothing waits."""
    return min((p.next_try_ms for p in pending), default=None)


def backoff_ms(
    attempts: int,
    retry_after_ms: int | None = None,
    *,
    base_ms: int = BACKOFF_BASE_MS,
    cap_ms: int = BACKOFF_CAP_MS,
) -> int:
    """How long to wait before retrying after ``attempts`` failures (1 = the first failure).

    Exponential (1 s, 2 s, 4 s ... capped at 5 min) so a struggling homeserver is not
    hammered; a server's ``retry_after_ms`` is always honoured, even above the cap.
    """
    exponent = max(0, min(attempts - 1, 30))
    delay = min(cap_ms, base_ms * (1 << exponent))
    if retry_after_ms is not None and retry_after_ms > delay:
        return retry_after_ms
    return delay


class Verdict(enum.Enum):
    """What a redaction attempt's result means for the schedule."""

    DONE = "done"
    """Redacted, or nothing left to redact (event unknown, already gone)."""
    RETRY_LATER = "retry_later"
    """The homeserver is busy or unreachable: everyone waits (rate limit, 5xx, network)."""
    RETRY_EVENT = "retry_event"
    """This event was refused (e.g. the bot lost its power): retry it alone, with backoff."""


TRANSIENT_ERRCODES = frozenset({"M_LIMIT_EXCEEDED", "M_UNKNOWN", "M_UNREACHABLE"})
GONE_ERRCODES = frozenset({"M_NOT_FOUND"})


def judge(errcode: str | None, http_status: int | None) -> Verdict:
    """Classify a redaction answer: a 2xx status is success; no errcode and no status is a
    transport failure (the homeserver did not answer).

    Redaction is idempotent: an event that is already redacted, purged by retention or
    unknown to the server (404 / ``M_NOT_FOUND``) counts as done, so a replay after a crash
    never blocks the schedule.
    """
    if errcode is None and http_status is None:
        return Verdict.RETRY_LATER
    if http_status is not None and 200 <= http_status < 300:
        return Verdict.DONE
    if errcode in GONE_ERRCODES or http_status == 404:
        return Verdict.DONE
    if errcode in TRANSIENT_ERRCODES or http_status == 429 or (http_status or 0) >= 500:
        return Verdict.RETRY_LATER
    return Verdict.RETRY_EVENT


def redaction_txn_id(room_id: str, event_id: str) -> str:
    """A transaction id fixed per event, so a redaction replayed after a crash is deduplicated
    by the homeserver (same access token and device) instead of producing a second event."""
    digest = hashlib.sha256(f"{room_id}\x00{event_id}".encode()).hexdigest()
    return f"caducee-expiry-{digest[:32]}"


def media_uris(content: Mapping[str, Any]) -> tuple[str, ...]:
    """The ``mxc://`` URIs an event's decrypted content points to (file, image, thumbnail).

    Covers unencrypted attachments (``url``, ``info.thumbnail_url``) and encrypted ones
    (``file.url``, ``info.thumbnail_file.url``). Only the URIs are kept by the engine, never
    the content or the decryption keys.
    """
    found: list[str] = []

    def add(value: object) -> None:
        if isinstance(value, str) and value.startswith("mxc://") and value not in found:
            found.append(value)

    add(content.get("url"))
    file_info = content.get("file")
    if isinstance(file_info, Mapping):
        add(file_info.get("url"))
    info = content.get("info")
    if isinstance(info, Mapping):
        add(info.get("thumbnail_url"))
        thumb = info.get("thumbnail_file")
        if isinstance(thumb, Mapping):
            add(thumb.get("url"))
    return tuple(found)


def split_mxc(uri: str) -> tuple[str, str] | None:
    """``mxc://server/media_id`` → ``(server, media_id)``; None when malformed."""
    if not uri.startswith("mxc://"):
        return None
    server, sep, media_id = uri[len("mxc://") :].partition("/")
    if not sep or not server or not media_id or "/" in media_id:
        return None
    return server, media_id


def local_media(uris: Sequence[str], server_name: str) -> list[str]:
    """Media ids stored on ``server_name`` (the only ones its admin API can delete)."""
    ids: list[str] = []
    for uri in uris:
        parts = split_mxc(uri)
        if parts is not None and parts[0] == server_name:
            ids.append(parts[1])
    return ids


def pack_media(uris: Sequence[str]) -> str | None:
    """Store form of a URI list (space-separated; mxc URIs never contain spaces)."""
    kept = [u for u in uris if split_mxc(u) is not None]
    return " ".join(kept) if kept else None


def unpack_media(packed: str | None) -> tuple[str, ...]:
    return tuple(packed.split()) if packed else ()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of nothing")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]
