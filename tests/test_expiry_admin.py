"""The bot's Synapse admin client for expiry: a room purge Synapse reports as failed is
started again, and gives up with a clear error. The homeserver side is a small aiohttp app
answering the two admin endpoints as Synapse does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.expiry.admin import PURGE_ATTEMPTS, PurgeFailedError, SynapseExpiryAdmin
from bot.ids import RoomId

ROOM = RoomId("!case:hs-a.test")
TOKEN = "admin-secret"


@dataclass
class PurgeScript:
    failures_before_success: int
    purges: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        async def delete(request: web.Request) -> web.Response:
            assert request.headers["Authorization"] == f"Bearer {TOKEN}"
            body = await request.json()
            assert body["purge"] is True
            self.purges.append(request.match_info["room_id"])
            return web.json_response({"delete_id": f"d{len(self.purges)}"})

        async def status(request: web.Request) -> web.Response:
            attempt = int(request.match_info["delete_id"][1:])
            if attempt <= self.failures_before_success:
                return web.json_response(
                    {"status": "failed", "error": "FOREIGN KEY constraint failed"}
                )
            return web.json_response({"status": "complete"})

        app = web.Application()
        app.router.add_delete("/_synapse/admin/v2/rooms/{room_id}", delete)
        app.router.add_get("/_synapse/admin/v2/rooms/delete_status/{delete_id}", status)
        return app


@pytest_asyncio.fixture
async def homeserver() -> AsyncIterator[tuple[PurgeScript, SynapseExpiryAdmin]]:
    script = PurgeScript(failures_before_success=1)
    server = TestServer(script.app(), host="127.0.0.1")
    await server.start_server()
    admin = SynapseExpiryAdmin(str(server.make_url("")), TOKEN, purge_retry_s=0.01)
    yield script, admin
    await admin.close()
    await server.close()


async def test_a_failed_purge_is_started_again(
    homeserver: tuple[PurgeScript, SynapseExpiryAdmin],
) -> None:
    script, admin = homeserver
    await admin.purge_room(ROOM)
    assert script.purges == [ROOM, ROOM]


async def test_a_purge_that_keeps_failing_says_why(
    homeserver: tuple[PurgeScript, SynapseExpiryAdmin],
) -> None:
    script, admin = homeserver
    script.failures_before_success = PURGE_ATTEMPTS
    with pytest.raises(PurgeFailedError, match="FOREIGN KEY constraint failed"):
        await admin.purge_room(ROOM)
    assert len(script.purges) == PURGE_ATTEMPTS
