"""The export's Matrix side on matrix-nio: read the room back (decrypted), fetch and decrypt
attachments, and deliver the file to the requester's DM as an encrypted attachment.

Nothing here writes the export anywhere but memory and the encrypted upload: the homeserver
only ever stores ciphertext, whose key travels inside the (Megolm-encrypted) DM message.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from nio import (
    MegolmEvent,
    RoomMessagesResponse,
    UploadResponse,
)
from nio.crypto.attachments import decrypt_attachment

from bot.cases.export.model import RawEvent
from bot.commands.context import MatrixActionError
from bot.ids import RoomId
from bot.matrix.actions import NioActions
from bot.matrix.client import CaduceeClient

logger = logging.getLogger(__name__)

PAGE = 100


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
        """An encrypted room with exactly the bot and ``user_id`` (their DM with the bot)."""
        for room_id, room in self._client.rooms.items():
            if room_id in exclude or not room.encrypted:
                continue
            if set(room.users) == {self._client.user_id, user_id}:
                return RoomId(room_id)
        return None

    async def deliver(self, room_id: RoomId, filename: str, data: bytes, caption: str) -> None:
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
        await self._actions.send_event(room_id, "m.room.message", content)
        await self._actions.send_notice(room_id, caption)


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
