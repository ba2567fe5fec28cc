"""Small asyncio helpers the bot's long-running loops share."""

from __future__ import annotations

import asyncio


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
