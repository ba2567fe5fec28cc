"""Sync tokens are saved only after the work of their sync (and of every earlier one)."""

from __future__ import annotations

import asyncio

from bot.checkpoint import SyncCheckpoints


async def test_tokens_wait_for_their_tasks_and_are_saved_in_order() -> None:
    saved: list[str] = []
    checkpoints = SyncCheckpoints(saved.append)
    gate_1, gate_2 = asyncio.Event(), asyncio.Event()
    slow = asyncio.create_task(gate_1.wait())
    fast = asyncio.create_task(gate_2.wait())
    checkpoints.add("t1", [])
    assert saved == ["t1"]
    checkpoints.add("t2", [slow])
    checkpoints.add("t3", [fast])
    gate_2.set()
    await fast
    await asyncio.sleep(0)  # let done-callbacks run
    assert saved == ["t1"]  # t3 is done but t2 is not: nothing past t2 is acknowledged
    gate_1.set()
    await slow
    await asyncio.sleep(0)
    assert saved == ["t1", "t3"] and checkpoints.waiting == 0


async def test_a_cancelled_task_is_never_acknowledged() -> None:
    saved: list[str] = []
    checkpoints = SyncCheckpoints(saved.append)
    task = asyncio.create_task(asyncio.Event().wait())
    checkpoints.add("t1", [task])
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    checkpoints.add("t2", [])
    assert saved == [] and checkpoints.waiting == 2


async def test_a_failing_save_keeps_the_older_position() -> None:
    def broken(token: str) -> None:
        raise RuntimeError("store closed")

    checkpoints = SyncCheckpoints(broken)
    checkpoints.add("t1", [])
    assert checkpoints.saved is None
