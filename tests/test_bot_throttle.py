"""The bot's requests against a homeserver stand-in that rate-limits like Synapse: a bounded
number in flight, and one 429 makes the whole queue wait instead of each request in turn."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from nio import JoinedRoomsResponse

from bot.matrix.client import CaduceeClient
from bot.throttle import MAX_RETRY_SECONDS, retry_after_seconds

PAUSE_MS = 400


@dataclass
class Limiting:
    """Answers 429 to the first request, and to any that arrives while its pause runs."""

    in_flight: int = 0
    most_in_flight: int = 0
    refused: int = 0
    answered: int = 0
    syncs: int = 0
    paused_until: float = 0.0

    def app(self) -> web.Application:
        async def joined_rooms(request: web.Request) -> web.Response:
            now = time.monotonic()
            if not self.refused or now < self.paused_until:
                self.refused += 1
                self.paused_until = now + PAUSE_MS / 1000
                return web.json_response(
                    {"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": PAUSE_MS}, status=429
                )
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            try:
                await asyncio.sleep(0.02)  # the homeserver's work, so that requests overlap
            finally:
                self.in_flight -= 1
            self.answered += 1
            return web.json_response({"joined_rooms": []})

        async def sync(request: web.Request) -> web.Response:
            self.syncs += 1
            return web.json_response({"next_batch": "s1"})

        app = web.Application()
        app.router.add_get("/_matrix/client/v3/joined_rooms", joined_rooms)
        app.router.add_get("/_matrix/client/v3/sync", sync)
        return app


@pytest_asyncio.fixture
async def limiting() -> AsyncIterator[tuple[Limiting, CaduceeClient]]:
    homeserver = Limiting()
    server = TestServer(homeserver.app())
    await server.start_server()
    client = CaduceeClient(str(server.make_url("")).rstrip("/"), "@caducee:clinic.test")
    client.access_token = "syt_bot"
    try:
        yield homeserver, client
    finally:
        await client.close()
        await server.close()


async def test_a_burst_is_bounded_and_one_429_pauses_the_whole_queue(
    limiting: tuple[Limiting, CaduceeClient],
) -> None:
    homeserver, client = limiting
    answers = await asyncio.gather(*(client.joined_rooms() for _ in range(40)))
    assert all(isinstance(a, JoinedRoomsResponse) for a in answers)
    assert homeserver.answered == 40
    # Only the requests already on their way when the first 429 came back were refused;
    # the other 32 waited the pause out instead of each collecting its own 429.
    assert 1 <= homeserver.refused <= client.gate.limit
    assert homeserver.most_in_flight <= client.gate.limit


async def test_the_sync_long_poll_is_outside_the_bound(
    limiting: tuple[Limiting, CaduceeClient],
) -> None:
    homeserver, client = limiting
    client.gate.pause(60)  # as after a 429 asking for a minute
    await asyncio.wait_for(client.sync(timeout=0), timeout=10)
    assert homeserver.syncs == 1


@pytest.mark.parametrize(
    ("body", "seconds"),
    [
        ({"retry_after_ms": 1500}, 1.5),
        ({"retry_after_ms": 10**9}, MAX_RETRY_SECONDS),
        ({"retry_after_ms": -3}, 5.0),
        ({"retry_after_ms": True}, 5.0),
        ({}, 5.0),
        (None, 5.0),
    ],
)
def test_the_delay_is_the_homeserver_s_within_bounds(body: object, seconds: float) -> None:
    assert retry_after_seconds(body) == seconds
