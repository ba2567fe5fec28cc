"""The export's Matrix side on matrix-nio: read the room back (decrypted), fetch and decrypt
attachments, and deliver the file to the requester's DM as an encrypted attachment.

Nothing here writes the export anywhere but memory and the encrypted upload: the homeserver
only ever stores ciphertext, whose key travels inside the (Megolm-encrypted) DM message.
"""

from __future__ import annotations

import io
import logging
import time
from typing import Any

from nio import (
    MegolmEvent,
    RoomGetStateEventResponse,
    RoomMessagesResponse,
    UploadResponse,
)
from nio.crypto.attachments import decrypt_attachment

from bot.cases.export.command import Delivery
from bot.cases.export.model import RawEvent
from bot.commands.context import MatrixActionError
from bot.commands.rooms import ENCRYPTION_ALGORITHM
from bot.expiry.policy import PURGE_MARGIN_MS, RETENTION_EVENT, retention_content
from bot.ids import EventId, RoomId, UserId
from bot.matrix.actions import NioActions
from bot.matrix.client import CaduceeClient

logger = logging.getLogger(__name__)

PAGE = 100
FIND_PAGES = 20
"""How far back (pages of the bot's own messages) a resumed export looks for its delivery."""
CLOCK_SKEW_MS = 60_000


class NioExportPort:
    def __init__(self, client: CaduceeClient, actions: NioActions) -> None:
        self._client = client
        self._actions = actions

    async def read_messages(self, room_id: RoomId, limit: int) -> list[RawEvent]:
        """Up to ``limit`` messages of the room (newest first read, any order returned),
        decrypted when the bot holds the keys; the bot's own messages are left out."""
        out: list[RawEvent] = []
        start: str | None = None
        while len(out) < limit:
            response = await self._client.room_messages(room_id, start=start, limit=PAGE)
            if not isinstance(response, RoomMessagesResponse):
                raise MatrixActionError("could not read the room's messages")
            for event in response.chunk:
                raw = _raw(event, self._client.user_id)
                if raw is not None:
                    out.append(raw)
            if not response.chunk or not response.end or response.end == start:
                break
            start = response.end
        return out

    async def download(self, content: dict[str, Any]) -> bytes:
        """The attachment's plaintext, decrypted in memory."""
        file = content.get("file")
        url = file.get("url") if isinstance(file, dict) else content.get("url")
        if not isinstance(url, str):
            raise MatrixActionError("attachment without address")
        response = await self._client.download(mxc=url)
        body = getattr(response, "body", None)
        if not isinstance(body, bytes):
            raise MatrixActionError("could not download an attachment")
        if not isinstance(file, dict):
            return body
        try:
            return bytes(
                decrypt_attachment(body, file["key"]["k"], file["hashes"]["sha256"], file["iv"])
            )
        except Exception as exc:
            raise MatrixActionError("could not decrypt an attachment") from exc

    def member_name(self, room_id: RoomId, user_id: str) -> str:
        room = self._client.rooms.get(room_id)
        name = room.user_name(user_id) if room is not None else None
        return name or user_id

    def direct_room(self, user_id: str, exclude: set[str]) -> RoomId | None:
        """An encrypted room with exactly the bot and ``user_id`` (their DM with the bot),
        among the rooms whose members the client holds: the fallback for a DM from before
        the bot recorded DMs (`BotStore.direct_room`)."""
        for room_id, room in self._client.rooms.items():
            if room_id in exclude or not room.encrypted:
                continue
            if set(room.users) == {self._client.user_id, user_id}:
                return RoomId(room_id)
        return None

    async def open_direct_room(self, user_id: UserId, lifetime_s: int) -> RoomId:
        """A new DM with ``user_id``: encrypted from its first event, invite-only, its
        messages living ``lifetime_s`` on the homeservers too (``m.room.retention``)."""
        room_id = await self._actions.create_room(direct_room_body(user_id, lifetime_s))
        logger.info("opened a direct room %s for an export", room_id)
        return room_id

    async def lifetime_ms(self, room_id: RoomId) -> int | None:
        """The room's message lifetime from ``m.room.retention``: its ``max_lifetime`` less
        the purge margin the bot adds to its own rooms (`retention_content`), so the bot
        redacts when the lifetime ends and homeservers purge a margin later."""
        response = await self._client.room_get_state_event(room_id, RETENTION_EVENT)
        if not isinstance(response, RoomGetStateEventResponse):
            return None  # no policy in the room (404) or unreadable: the default applies
        value = response.content.get("max_lifetime")
        if not isinstance(value, int) or value <= 0:
            return None
        return value - PURGE_MARGIN_MS if value > PURGE_MARGIN_MS else value

    async def find_delivery(self, room_id: RoomId, txn_id: str, since_ms: int) -> Delivery | None:
        """Read the room back to ``since_ms`` for the bot's message sent with ``txn_id``
        (the homeserver tells the sending device its own transaction ids)."""
        start: str | None = None
        own = self._client.user_id
        message_filter = {"senders": [own], "lazy_load_members": True}
        for _page in range(FIND_PAGES):
            response = await self._client.room_messages(
                room_id, start=start, limit=PAGE, message_filter=message_filter
            )
            if not isinstance(response, RoomMessagesResponse):
                raise MatrixActionError("could not read the direct conversation back")
            for event in response.chunk:
                source = getattr(event, "source", None)
                if not isinstance(source, dict):
                    continue
                unsigned = source.get("unsigned")
                if isinstance(unsigned, dict) and unsigned.get("transaction_id") == txn_id:
                    return Delivery(
                        EventId(event.event_id),
                        int(event.server_timestamp),
                        tuple(_media(source.get("content"))),
                    )
            oldest = min((int(e.server_timestamp) for e in response.chunk), default=0)
            if not response.chunk or not response.end or response.end == start:
                break
            if oldest < since_ms - CLOCK_SKEW_MS:
                break
            start = response.end
        return None

    async def deliver(
        self, room_id: RoomId, filename: str, data: bytes, caption: str, txn_id: str
    ) -> Delivery:
        """Upload ``data`` encrypted and post it as an ``m.file`` in ``room_id``."""
        response, keys = await self._client.upload(
            io.BytesIO(data),
            content_type="application/octet-stream",
            filename=None,  # the name travels encrypted, in the message
            encrypt=True,
            filesize=len(data),
        )
        if not isinstance(response, UploadResponse) or keys is None:
            raise MatrixActionError("the encrypted export could not be uploaded")
        content = {
            "msgtype": "m.file",
            "body": filename,
            "filename": filename,
            "info": {"mimetype": "application/zip", "size": len(data)},
            "file": {
                "url": response.content_uri,
                "key": keys["key"],
                "iv": keys["iv"],
                "hashes": keys["hashes"],
                "v": keys["v"],
                "mimetype": "application/zip",
            },
        }
        sent = int(time.time() * 1000)
        event_id = await self._actions.send_event(room_id, "m.room.message", content, txn_id=txn_id)
        notice = {"msgtype": "m.notice", "body": caption}
        await self._actions.send_event(
            room_id, "m.room.message", notice, txn_id=f"{txn_id}-caption"
        )
        return Delivery(event_id, sent, (response.content_uri,))


def direct_room_body(user_id: str, lifetime_s: int) -> dict[str, Any]:
    """The /createRoom body of a DM the bot opens: as Element opens one (trusted private
    chat, ``is_direct``), encrypted from the start, with the lifetime as retention policy."""
    return {
        "preset": "trusted_private_chat",
        "visibility": "private",
        "is_direct": True,
        "invite": [user_id],
        "initial_state": [
            {
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": ENCRYPTION_ALGORITHM},
            },
            {
                "type": RETENTION_EVENT,
                "state_key": "",
                "content": retention_content(lifetime_s * 1000),
            },
        ],
    }


def _media(content: object) -> list[str]:
    if not isinstance(content, dict):
        return []
    file = content.get("file")
    url = file.get("url") if isinstance(file, dict) else content.get("url")
    return [url] if isinstance(url, str) and url.startswith("mxc://") else []


def _raw(event: Any, own: str | None) -> RawEvent | None:
    source = getattr(event, "source", None)
    if not isinstance(source, dict) or event.sender == own:
        return None
    ts = int(getattr(event, "server_timestamp", 0) or 0)
    if isinstance(event, MegolmEvent):  # still encrypted: the bot has no key for it
        return RawEvent(event.event_id, event.sender, ts, None)
    if source.get("type") != "m.room.message":
        return None
    content = source.get("content")
    if not isinstance(content, dict) or not content:  # redacted: expired, nothing left
        return None
    return RawEvent(event.event_id, event.sender, ts, content)
