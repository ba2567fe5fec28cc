"""Synapse admin API calls for expiry: rate-limit exemption, media deletion, room purge.

They need a server admin's access token: either the bot's account is a server admin, or the
operator gives one in a 0600 file (config ``admin_token_file``). Only the bot's own
homeserver is ever called; the token never leaves this module and is never logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.expiry.ports import AdminError
from bot.ids import RoomId, UserId

logger = logging.getLogger(__name__)

PURGE_ATTEMPTS = 3


class PurgeFailedError(AdminError):
    """The homeserver ran the room purge and reported it failed."""


def read_admin_token(path: Path) -> str:
    """The token in ``path``, refusing a file that others may read (it is a server key)."""
    try:
        mode = path.stat().st_mode
    except OSError as error:
        raise AdminError(f"cannot read the admin token file {path}: {error.strerror}") from error
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AdminError(
            f"the admin token file {path} is readable by others; run: chmod 600 {path}"
        )
    token = path.read_text().strip()
    if not token:
        raise AdminError(f"the admin token file {path} is empty")
    return token


def write_admin_token(path: Path, token: str) -> None:
    """Create a 0600 token file (used by deploy tooling and tests)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)


class SynapseExpiryAdmin:
    """`HomeserverAdmin` over HTTP. Owns its aiohttp session; `await close()` when done."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        purge_timeout_s: float = 120.0,
        purge_retry_s: float = 1.0,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._http: aiohttp.ClientSession | None = None
        self._purge_timeout_s = purge_timeout_s
        self._purge_retry_s = purge_retry_s

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        try:
            async with self._http.request(
                method, self._base + path, json=body, headers=self._headers
            ) as response:
                data: Any = await response.json(content_type=None)
                if response.status >= 400:
                    errcode = data.get("errcode", "") if isinstance(data, dict) else ""
                    error = data.get("error", "") if isinstance(data, dict) else ""
                    raise AdminError(
                        f"{method} {path.split('?')[0]}: {response.status} "
                        f"{errcode} {error}".strip()
                    )
                return data
        except (TimeoutError, aiohttp.ClientError) as error:
            raise AdminError(
                f"{method}: homeserver unreachable ({type(error).__name__})"
            ) from error

    async def exempt_from_rate_limits(self, user_id: UserId) -> None:
        """No rate limit on the bot's own messages (its redactions come in bursts)."""
        await self._call(
            "POST",
            f"/_synapse/admin/v1/users/{quote(user_id)}/override_ratelimit",
            {"messages_per_second": 0, "burst_count": 0},
        )

    async def delete_media(self, server_name: str, media_id: str) -> None:
        """Delete a blob stored on this homeserver (an expired attachment)."""
        await self._call(
            "DELETE", f"/_synapse/admin/v1/media/{quote(server_name)}/{quote(media_id)}"
        )

    async def purge_room(self, room_id: RoomId) -> None:
        """Remove a room and all its events from this homeserver; waits for the purge.

        A purge the homeserver reports as failed is started again (twice at most): Synapse
        can trip over rows that its own background work writes for the room meanwhile, and
        a second purge finishes the job.
        """
        for attempt in range(1, PURGE_ATTEMPTS + 1):
            try:
                await self._purge_once(room_id)
                return
            except PurgeFailedError as error:
                if attempt == PURGE_ATTEMPTS:
                    raise
                logger.warning(
                    "purge of %s failed (%s); starting it again (%d/%d)",
                    room_id,
                    error,
                    attempt + 1,
                    PURGE_ATTEMPTS,
                )
                await asyncio.sleep(self._purge_retry_s * attempt)

    async def _purge_once(self, room_id: RoomId) -> None:
        data = await self._call(
            "DELETE",
            f"/_synapse/admin/v2/rooms/{quote(room_id)}",
            {"purge": True, "block": False, "force_purge": True},
        )
        delete_id = data.get("delete_id") if isinstance(data, dict) else None
        if not isinstance(delete_id, str):
            raise AdminError("room purge: the homeserver gave no delete id")
        deadline = time.monotonic() + self._purge_timeout_s
        while True:
            status = await self._call("GET", f"/_synapse/admin/v2/rooms/delete_status/{delete_id}")
            state = status.get("status") if isinstance(status, dict) else None
            if state == "complete":
                return
            if state == "failed":
                raise PurgeFailedError(
                    f"room purge failed: {status.get('error') or 'no reason given'}"
                )
            if time.monotonic() > deadline:
                raise AdminError("room purge still running after the timeout")
            await asyncio.sleep(0.2)
