"""The notice that messages are about to disappear, for rooms with a short lifetime.

Sent once per case (recorded in the journal): right after ``!case new`` when it is already
due, else by the bot's periodic check (`run_warnings`).
"""

from __future__ import annotations

import asyncio
import logging

from bot.cases.journal import CaseJournal
from bot.cases.lifetime import warning_due_ms, warning_text
from bot.commands.context import MatrixActionError, MatrixActions
from bot.store import BotStore, CaseRoom

logger = logging.getLogger(__name__)

CHECK_INTERVAL_S = 60.0


async def warn_if_due(
    actions: MatrixActions, journal: CaseJournal, case: CaseRoom, now_ms: int
) -> bool:
    """Post the warning in ``case`` if it is due and was not posted yet; True if posted."""
    due = warning_due_ms(case.created_ms, case.ttl_seconds)
    if due is None or due > now_ms or not case.is_open:
        return False
    if await journal.warned_ms(case.room_id) is not None:
        return False
    await actions.send_notice(case.room_id, warning_text(case.ttl_seconds, case.created_ms, now_ms))
    await journal.mark_warned(case.room_id, at_ms=now_ms)
    logger.info("expiry warning posted in case room %s", case.room_id)
    return True


async def warn_due_cases(
    actions: MatrixActions, store: BotStore, journal: CaseJournal, now_ms: int
) -> int:
    """Warn every open case whose warning is due; returns how many were warned."""
    candidates = [
        c
        for c in await store.open_cases()
        if (due := warning_due_ms(c.created_ms, c.ttl_seconds)) is not None and due <= now_ms
    ]
    pending = set(await journal.unwarned([c.room_id for c in candidates]))
    count = 0
    for case in candidates:
        if case.room_id not in pending:
            continue
        try:
            count += await warn_if_due(actions, journal, case, now_ms)
        except MatrixActionError as exc:  # retried at the next check
            logger.warning("could not warn case room %s: %s", case.room_id, exc.message)
    return count


async def run_warnings(
    actions: MatrixActions, store: BotStore, interval_s: float = CHECK_INTERVAL_S
) -> None:
    """Check for due warnings forever (cancel to stop)."""
    journal = CaseJournal(store.database)
    while True:
        try:
            await warn_due_cases(actions, store, journal, store.database.now_ms())
        except Exception as exc:  # a database hiccup must not stop the checks
            logger.error("expiry warning check failed: %s", type(exc).__name__)
        await asyncio.sleep(interval_s)
