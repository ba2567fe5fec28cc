"""The bot tells the bridge which doctors it holds, so the admin console can list them.

`ResetReporter` sends the whole list of pending identity resets
(``PUT /_caducee/v1/bot/identity-resets``, with the bot's service token) when the bot starts
and each time the list changes: a new reset, a confirmation from an earlier session, an
operator's ``accept-identity`` or ``forget-identity`` picked up from disk. With each list go
the outcomes of the resets that left it since the last report (read from the bot's audit log),
so the bridge's audit log says how each one ended.

Sending never holds anything up: `changed()` only sets a flag, and one background task does
the network. When the bridge cannot be reached or refuses, the task waits (1 s, doubling up
to `MAX_RETRY_SECONDS`) and sends the list as it is then; a log line says so once per outage,
never with the token. Nothing secret is sent: Matrix IDs, times, public master keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import aiohttp

from bot.crypto.keyfiles import PendingReset
from bot.identity.texts import Outcome

logger = logging.getLogger(__name__)

REPORT_PATH: Final = "/_caducee/v1/bot/identity-resets"
DEFAULT_TIMEOUT: Final = aiohttp.ClientTimeout(total=10, connect=3)
FIRST_RETRY_SECONDS: Final = 1.0
MAX_RETRY_SECONDS: Final = 60.0
ENDINGS: Final = frozenset(
    {Outcome.CONFIRMED_BY_SESSION, Outcome.ACCEPTED_BY_OPERATOR, Outcome.FORGOTTEN_BY_OPERATOR}
)
"""Audit outcomes that end a reset (the others keep it pending)."""

OutcomeLookup = Callable[[str], Awaitable[str | None]]
"""user -> the latest identity-reset outcome in the bot's audit log, None if none."""


def report_body(
    bot: str, pending: Sequence[PendingReset], resolved: dict[str, str]
) -> dict[str, Any]:
    """The JSON the bridge reads (`bridge.identity_resets.model.parse_report`)."""
    return {
        "bot": bot,
        "pending": [
            {
                "user_id": p.user_id,
                "since_ms": p.since_ms,
                "master_key": p.seen,
                "pinned_master_key": p.pinned,
            }
            for p in pending
        ],
        "resolved": [{"user_id": u, "outcome": o} for u, o in sorted(resolved.items())],
    }


class ResetReporter:
    """Keeps the bridge's copy of the pending resets up to date, in the background.

    Args:
        base_url: the bridge.
        token: the bot's service token.
        bot: the bot's Matrix ID (named in the report).
        pending: the pending resets now (the pin store's `pending`).
        outcome_of: how a user's latest reset ended, from the bot's audit log.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        bot: str,
        pending: Callable[[], list[PendingReset]],
        outcome_of: OutcomeLookup | None = None,
        *,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
        first_retry: float = FIRST_RETRY_SECONDS,
    ) -> None:
        self._url = base_url.rstrip("/") + REPORT_PATH
        self._token = token
        self._bot = bot
        self._pending = pending
        self._outcome_of = outcome_of
        self._timeout = timeout
        self._first_retry = first_retry
        self._wake = asyncio.Event()
        self._sent: dict[str, PendingReset] | None = None
        """The list the bridge has (None: nothing sent since the bot started)."""
        self._failing = False
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.reports = 0
        """Reports the bridge accepted since start (for tests and logs)."""
        self.failures = 0
        """Attempts that failed since start."""

    def changed(self) -> None:
        """The list may have changed: send it soon. Never waits."""
        self._wake.set()

    def start(self) -> None:
        """Start the background task; the first report goes out at once."""
        self._wake.set()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="reset reporter")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        delay = self._first_retry
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                done = await self._report_once()
            except Exception as exc:  # a bug here must not end the reports for good
                logger.exception("Reporting the pending identity resets failed")
                done = self._failed(type(exc).__name__)
            if done:
                delay = self._first_retry
                continue
            self._wake.set()  # send again after the pause, whatever changed meanwhile
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)

    async def _resolved(self, now: dict[str, PendingReset]) -> dict[str, str]:
        """How the resets that left the list since the last report ended."""
        if self._sent is None or self._outcome_of is None:
            return {}
        found: dict[str, str] = {}
        for user in self._sent.keys() - now.keys():
            try:
                outcome = await self._outcome_of(user)
            except Exception as exc:  # the audit log unreadable: the bridge says "no longer"
                logger.warning("Cannot read the audit log (%s)", type(exc).__name__)
                outcome = None
            if outcome in ENDINGS:
                found[user] = str(outcome)
        return found

    async def _report_once(self) -> bool:
        """Send the list if the bridge may not have it; True when nothing is left to send."""
        now = {p.user_id: p for p in self._pending()}
        if now == self._sent:
            return True
        body = report_body(self._bot, list(now.values()), await self._resolved(now))
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            async with self._session.put(self._url, json=body, headers=headers) as resp:
                status = resp.status
                await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return self._failed(f"the bridge is unreachable ({type(exc).__name__})")
        if status != 200:
            return self._failed(f"the bridge answered HTTP {status}")
        if self._failing:
            logger.warning("The bridge has the pending identity resets again")
        self._failing = False
        self._sent = now
        self.reports += 1
        logger.info("Reported %d pending identity reset(s) to the bridge", len(now))
        return True

    def _failed(self, why: str) -> bool:
        self.failures += 1
        if not self._failing:
            logger.warning(
                "Cannot report the pending identity resets to the bridge: %s; retrying", why
            )
        self._failing = True
        return False
