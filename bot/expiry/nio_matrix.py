"""The engine's Matrix port on a matrix-nio client, and the sync-to-engine feeding helper.

The shell owns the `nio.AsyncClient`; it wraps it in `NioExpiryMatrix` for the engine and
calls `feed_sync` (or does the same by hand) for every sync response, before it saves the
response's ``next_batch`` token.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp

from bot.expiry.policy import media_uris
from bot.expiry.ports import MatrixUnavailableError, Page, RedactFailure, TimelineEvent
from bot.ids import EventId, RoomId, UserId

if TYPE_CHECKING:
    from bot.expiry.engine import ExpiryEngine

logger = logging.getLogger(__name__)

_TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


def describe(event: Any) -> TimelineEvent | None:
    """What the engine keeps of a nio event (decrypted or not); None if it has no id.

    A decrypted event counts under its envelope's type (``m.room.encrypted``): a sender cannot
    dodge expiry by encrypting something that claims to be a redaction or state.
    """
    source: Mapping[str, Any] = getattr(event, "source", None) or {}
    event_id = source.get("event_id") or getattr(event, "event_id", None)
    if not isinstance(event_id, str):
        return None
    ts = source.get("origin_server_ts", getattr(event, "server_timestamp", 0))
    decrypted = bool(getattr(event, "decrypted", False))
    event_type = "m.room.encrypted" if decrypted else str(source.get("type", ""))
    unsigned = source.get("unsigned")
    redacted = isinstance(unsigned, Mapping) and "redacted_because" in unsigned
    content = source.get("content")
    media = media_uris(content) if isinstance(content, Mapping) else ()
    for attribute in ("url", "thumbnail_url"):
        value = getattr(event, attribute, None)
        if isinstance(value, str) and value.startswith("mxc://") and value not in media:
            media = (*media, value)
    return TimelineEvent(
        event_id=EventId(event_id),
        origin_server_ts=int(ts) if isinstance(ts, int) else 0,
        event_type=event_type,
        is_state="state_key" in source,
        redacted=redacted,
        media=media,
    )


async def feed_sync(engine: ExpiryEngine, response: Any) -> None:
    """Give the engine every timeline event of a nio `SyncResponse`, then persist.

    Limited (gappy) timelines are recorded as gaps to back-fill. When this returns, the
    schedule is committed: only then may the shell save ``response.next_batch``.
    """
    for room_id, joined in response.rooms.join.items():
        timeline = joined.timeline
        if timeline.limited and timeline.prev_batch:
            await engine.on_limited_timeline(RoomId(room_id), timeline.prev_batch)
        for event in timeline.events:
            described = describe(event)
            if described is not None:
                engine.observe_event(RoomId(room_id), described)
    await engine.persist()


class NioExpiryMatrix:
    """`ExpiryMatrix` on a logged-in `nio.AsyncClient` (its token, device and decryption)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    @property
    def user_id(self) -> UserId:
        return UserId(str(self._client.user_id))

    async def redact(self, room_id: RoomId, event_id: EventId, txn_id: str) -> RedactFailure | None:
        from nio import RoomRedactError

        try:
            response = await self._client.room_redact(room_id, event_id, tx_id=txn_id)
        except _TRANSPORT_ERRORS as error:
            return RedactFailure(None, None, message=type(error).__name__)
        if isinstance(response, RoomRedactError):
            return RedactFailure(
                errcode=response.status_code,
                http_status=_http_status(response),
                retry_after_ms=response.retry_after_ms,
                message=response.message,
            )
        return None

    async def history(self, room_id: RoomId, from_token: str | None, limit: int) -> Page:
        from nio import RoomMessagesError

        try:
            response = await self._client.room_messages(room_id, start=from_token, limit=limit)
        except _TRANSPORT_ERRORS as error:
            raise MatrixUnavailableError(type(error).__name__) from error
        if isinstance(response, RoomMessagesError):
            raise MatrixUnavailableError(
                f"{response.status_code}: {response.message}",
                response.retry_after_ms,
                response.status_code,
            )
        events = [d for d in (describe(e) for e in response.chunk) if d is not None]
        end = response.end if response.chunk and response.end != from_token else None
        return Page(events, end)


def _http_status(response: Any) -> int | None:
    transport = getattr(response, "transport_response", None)
    status = getattr(transport, "status", None)
    return status if isinstance(status, int) else None


class ExpiryListener:
    """The shell's `bot.events.SyncListener` (and `SyncCommitListener`) for the engine: every
    timeline event is noted, persisted before its sync is acknowledged; gaps are recorded
    at once."""

    def __init__(self, engine: ExpiryEngine) -> None:
        self._engine = engine

    async def on_room_event(self, room_id: RoomId, event: Any) -> None:
        described = describe(event)
        if described is not None:
            self._engine.observe_event(room_id, described)
            self._engine.request_persist()

    async def on_gap(self, room_id: RoomId, prev_batch: str) -> None:
        await self._engine.on_limited_timeline(room_id, prev_batch)

    async def after_sync(self, response: Any) -> None:
        """Commit what this sync brought before the shell saves the sync position, so the
        schedule is persisted before the events are acknowledged (no reliance on catch-up)."""
        await self._engine.persist()
