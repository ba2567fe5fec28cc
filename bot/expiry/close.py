"""Closing a case: every message redacted now, everyone removed, the room purged.

`ExpiryLifecycle` plugs into ``!case close`` through the commands' `CaseLifecycle` hooks;
`close_room` does the whole sequence for callers outside the commands (operators' tools).
"""

from __future__ import annotations

import asyncio
import logging

from bot.commands.context import MatrixActions
from bot.commands.registry import CaseLifecycle
from bot.expiry.engine import ExpiryEngine
from bot.expiry.ports import AdminError
from bot.ids import RoomId
from bot.store import CaseRoom

logger = logging.getLogger(__name__)

CLOSE_REASON = "Dossier clos / Case closed"


async def redact_room_now(engine: ExpiryEngine, room_id: RoomId, timeout_s: float = 120.0) -> int:
    """Redact every message of a room now and wait: the whole history is read back and
    made due, and the engine's worker (`run` must be running) redacts it, overdue first.

    Messages from remote members may reach the bot's homeserver while this runs: they are
    due at once too, and once nothing is pending the history is read back one more time to
    catch them before returning.

    Returns how many redactions are still pending at the timeout (0 on success).
    """
    engine.start_closing(room_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    await engine.backfill(room_id, None, None, due_now=True)
    await engine.schedule.expedite_room(room_id, engine.now_ms())
    engine.wake()
    settled = False
    while True:
        left = await engine.schedule.pending_count(room_id)
        if loop.time() > deadline:
            return left
        if left == 0:
            if settled:
                return 0
            settled = await engine.backfill(room_id, None, None, due_now=True) == 0
            continue
        settled = False
        await asyncio.sleep(0.2)


async def purge_room(engine: ExpiryEngine, room_id: RoomId) -> None:
    """Remove the room from the bot's homeserver (admin API) and forget its schedule."""
    if engine.admin is None:
        raise AdminError("no admin token configured: the room cannot be purged")
    await engine.admin.purge_room(room_id)
    await engine.schedule.forget_room(room_id)
    engine.forget(room_id)


class ExpiryLifecycle(CaseLifecycle):
    """Redact everything while members are still there; purge once the bot has left.

    A purge failure (no admin token, homeserver refusal) is logged, not raised: the members
    are already removed and the content redacted, and Synapse's retention will purge the
    events anyway.
    """

    def __init__(self, engine: ExpiryEngine, *, redact_timeout_s: float = 120.0) -> None:
        self._engine = engine
        self._timeout = redact_timeout_s

    async def before_members_removed(self, case: CaseRoom) -> None:
        left = await redact_room_now(self._engine, case.room_id, self._timeout)
        if left:
            logger.warning("case %s: %d redaction(s) still pending at close", case.room_id, left)

    async def after_bot_left(self, case: CaseRoom) -> None:
        try:
            await purge_room(self._engine, case.room_id)
        except AdminError as error:
            self._engine.forget(case.room_id)
            logger.error("case %s: room not purged from the homeserver: %s", case.room_id, error)
        else:
            logger.info("case %s purged from the homeserver", case.room_id)

    async def close_aborted(self, case: CaseRoom) -> None:
        self._engine.stop_closing(case.room_id)
        logger.warning("case %s: close interrupted; its messages keep their lifetime", case.room_id)


async def close_room(
    engine: ExpiryEngine,
    actions: MatrixActions,
    room_id: RoomId,
    *,
    redact_timeout_s: float = 120.0,
) -> int:
    """Redact every message now, remove all members, leave, purge the room (admin API).

    Needs the engine's `run` task. Returns how many redactions were still pending when the
    members were removed (0 when everything was redacted in time).

    Raises:
        AdminError: the purge failed (the room is otherwise closed).
    """
    left = await redact_room_now(engine, room_id, redact_timeout_s)
    members = [m for m in await actions.joined_members(room_id) if m != actions.user_id]
    await asyncio.gather(*(actions.kick(room_id, m, CLOSE_REASON) for m in members))
    await actions.leave(room_id)
    await purge_room(engine, room_id)
    return left
