"""How the bot spaces its requests: a bounded number in flight, and one wait per 429.

nio retries each request that got a 429 on its own, after the `retry_after_ms` of its own
answer; every other request of the queue still goes out meanwhile, gets its own 429, and so
on: hundreds of refused requests when the bot is busy (a burst of new DMs). The gate makes
the whole queue wait: the first 429 pauses every request that has not gone out yet until
the homeserver's delay has passed, and at most `limit` requests are in flight at a time.
The long-polling sync is outside the bound (it waits for events, not for the homeserver).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

import aiohttp

logger = logging.getLogger(__name__)

DEFAULT_IN_FLIGHT: Final = 8
DEFAULT_RETRY_SECONDS: Final = 5.0
"""When a 429 says nothing about when to retry (nio's default too)."""
MAX_RETRY_SECONDS: Final = 300.0


def retry_after_seconds(body: object) -> float:
    """The delay a 429 answer asks for (its `retry_after_ms`), bounded."""
    if isinstance(body, dict):
        value = body.get("retry_after_ms")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return min(float(value) / 1000, MAX_RETRY_SECONDS)
    return DEFAULT_RETRY_SECONDS


class RequestGate:
    """Shared by every request of one client."""

    def __init__(
        self, limit: int = DEFAULT_IN_FLIGHT, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._clock = clock
        self._paused_until = 0.0
        self.limit = limit

    def pause(self, seconds: float) -> None:
        """A 429: no request leaves before `seconds` from now (the longest pause wins)."""
        until = self._clock() + seconds
        if until > self._paused_until:
            logger.warning("Homeserver asks to slow down: pausing requests for %.1f s", seconds)
            self._paused_until = until

    async def _wait_out_pause(self) -> None:
        left = self._paused_until - self._clock()
        if left > 0:
            await asyncio.sleep(left)  # the homeserver's own delay: that is the point

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self._wait_out_pause()
        async with self._slots:
            await self._wait_out_pause()  # a 429 may have come while this one queued
            yield

    async def through(
        self, call: Callable[[], Awaitable[aiohttp.ClientResponse]]
    ) -> aiohttp.ClientResponse:
        """Make one request in a slot; a 429 answer pauses the whole queue."""
        async with self.slot():
            response = await call()
            if response.status == 429:
                try:
                    body: object = await response.json(content_type=None)
                except (aiohttp.ClientError, ValueError):
                    body = None
                self.pause(retry_after_seconds(body))
            return response
