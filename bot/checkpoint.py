"""Sync tokens saved only once what they acknowledge is safe: at-least-once delivery.

nio would save the token of a sync before our callbacks run; a crash then loses the events of
that sync (a command never answered, an event never scheduled for expiry). Instead each sync's
token waits until every task spawned for that sync (command handlers - which claim the event
id in the bot's database first thing - and sync listeners such as the expiry engine) has
finished, and tokens are saved in order. After a crash the bot resumes from the last safe
token; events handled again are recognised by their event id (the dispatcher's store).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

logger = logging.getLogger(__name__)


class SyncCheckpoints:
    """Orders sync tokens behind the work they acknowledge.

    Args:
        save: persists a token (nio's store ``save_sync_token``); called in sync order.
    """

    def __init__(self, save: Callable[[str], None]) -> None:
        self._save = save
        self._queue: deque[tuple[str, list[asyncio.Task[Any]]]] = deque()
        self.saved: str | None = None

    def add(self, token: str, tasks: Iterable[asyncio.Task[Any]]) -> None:
        """Record a sync's token and the tasks it spawned; saves it at once if none run."""
        pending = [t for t in tasks if not t.done()]
        self._queue.append((token, pending))
        for task in pending:
            task.add_done_callback(lambda _t: self.flush())
        self.flush()

    def flush(self) -> None:
        """Save the newest token whose sync, and every earlier sync, is fully handled."""
        newest = None
        # A cancelled task (shutdown) did not finish its work: never acknowledge past it.
        while self._queue and all(t.done() and not t.cancelled() for t in self._queue[0][1]):
            newest = self._queue.popleft()[0]
        if newest is not None and newest != self.saved:
            try:
                self._save(newest)
            except Exception:  # a closed store at shutdown: resume from the older token
                logger.warning("Could not save the sync position; events may be seen again")
                return
            self.saved = newest

    @property
    def waiting(self) -> int:
        return len(self._queue)
