"""`wait_event`: the wait every long-running loop of the bot uses between rounds."""

from __future__ import annotations

import asyncio

import pytest

from bot.aio import wait_event


async def _loop_until_cancelled(event: asyncio.Event, rounds: list[int]) -> None:
    while True:
        await wait_event(event, 10.0)
        event.clear()
        rounds.append(1)


async def test_a_cancellation_arriving_as_the_event_fires_stops_the_loop() -> None:
    # asyncio.wait_for on Python 3.11 returns normally here and the loop runs forever.
    event = asyncio.Event()
    rounds: list[int] = []
    task = asyncio.create_task(_loop_until_cancelled(event, rounds))
    await asyncio.sleep(0)  # the loop is now waiting on the event
    event.set()
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    assert task in done and task.cancelled()


async def test_it_says_whether_the_event_was_set() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    asyncio.get_running_loop().call_soon(event.set)
    assert await wait_event(event, 5.0) is True


async def test_a_negative_wait_returns_at_once() -> None:
    event = asyncio.Event()
    event.set()
    assert await wait_event(event, -1.0) is True


@pytest.mark.parametrize("seconds", [0.0, -5.0])
async def test_no_wait_left_on_an_unset_event_is_false(seconds: float) -> None:
    assert await wait_event(asyncio.Event(), seconds) is False
