"""Small asyncio helpers the bot's long-running loops share."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` pass; True when it was set.

    Built on `asyncio.timeout` rather than `asyncio.wait_for`: on Python 3.11, `wait_for`
    drops a cancellation that arrives as the awaited event fires, and a loop waiting that
    way keeps running after its task was cancelled, so the bot could never stop.
    """
    try:
        async with asyncio.timeout(max(0.0, seconds)):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True


async def wait_until(
    predicate: Callable[[], bool], generation: Callable[[], asyncio.Event], timeout: float
) -> bool:
    """Wait until `predicate` holds, re-checking after each sync; False on timeout.

    `generation()` returns the event the *next* sync will set (the sync loop replaces it
    each time), so no sync between the check and the wait can be missed.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        event = generation()
        if predicate():
            return True
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        await wait_event(event, remaining)
