"""The identity gate: the first look at every command, before the dispatcher.

While a doctor's identity reset is pending (see `bot.identity`), their commands are not run:
each is answered with the explanation, readable by all their devices. ``!identity confirm``
accepts the reset when it was sent from a session the pinned identity had cross-signed (the
decrypted event's sender key is one of the pin's vouchers); from any other session it is
refused, and the refusal is audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from bot.commands.context import IncomingMessage, MatrixActionError
from bot.crypto.keyfiles import PinStore
from bot.identity.notice import NoticeNotSent, send_readable
from bot.identity.texts import (
    AUDIT_COMMAND,
    CONFIRMED,
    NOTHING_PENDING,
    REFUSED,
    Outcome,
    Request,
    classify,
    confirm_code,
    explain,
    reset_code,
)
from bot.ids import RoomId, UserId
from bot.matrix.actions import NioActions
from bot.unreadable import NoticeLimiter

logger = logging.getLogger(__name__)

AuditSink = Callable[[UserId, str, str, str], Awaitable[None]]
"""(user, room id or "", command, outcome) -> an audit line in the bot's database."""


class IdentityGate:
    """Holds back the commands of doctors whose identity reset is pending, and explains why.

    Args:
        client: the bot's nio client (device store, Olm machine, key queries).
        actions: the ordinary send path (used once the sender is trusted again).
        pins: the trust-on-first-use store the device trust uses.
        notice_interval: at most one explanation per room and doctor per this many seconds.
    """

    def __init__(
        self, client: Any, actions: NioActions, pins: PinStore, notice_interval: float
    ) -> None:
        self._client = client
        self._actions = actions
        self._pins = pins
        self._limiter = NoticeLimiter(notice_interval)
        self._tasks: set[asyncio.Task[None]] = set()
        self.audit: AuditSink | None = None
        """Set by the shell once the bot's database is open; None: log lines only."""
        self.on_change: Callable[[], None] | None = None
        """Called (without waiting) when the pending resets may have changed: the shell's
        `ResetReporter` then tells the bridge. None: nobody to tell."""

    @property
    def pins(self) -> PinStore:
        return self._pins

    # ---- from the device trust (inside a key query: no waiting here) ---------------------

    def noticed(self, user_id: str) -> None:
        """A new, not yet accepted master key of `user_id` was just seen."""
        self._spawn(self._audit(UserId(user_id), "", Outcome.PENDING))
        self._changed()

    def refresh(self) -> None:
        """Pick up an operator's decision: users whose pin changed on disk are judged again."""
        users = self._pins.refresh()
        if users:
            self._changed()
        olm = self._client.olm
        if users and olm is not None:
            logger.info("Trust decisions changed on disk for %d user(s)", len(users))
            olm.users_for_key_query.update(users)

    # ---- from the event router -----------------------------------------------------------

    async def intercept(self, msg: IncomingMessage, sender_key: str | None) -> bool:
        """Handle `msg` here if it concerns identity; True when the dispatcher must not run it."""
        request = classify(msg.body)
        if request is Request.NOT_A_COMMAND:
            return False
        await self._fresh_keys()
        seen = self._pins.changed().get(msg.sender)
        if seen is None:
            if request is Request.OTHER_COMMAND:
                return False
            await self._send(msg.room_id, NOTHING_PENDING)
            return True
        code = reset_code(seen)
        if request is Request.CONFIRM:
            await self._confirm(msg, sender_key, code)
        elif self._limiter.allow(msg.room_id, msg.sender, time.monotonic()):
            await self._send_readable(msg.room_id, explain(code))
        return True

    async def tell_held(self, room_id: RoomId, user_id: str, text: str) -> bool:
        """Say a fixed `text` (an unreadable-message notice) so a held doctor can read it."""
        if user_id not in self._pins.changed():
            return False
        await self._send_readable(room_id, text)
        return True

    async def _confirm(self, msg: IncomingMessage, sender_key: str | None, code: str) -> None:
        if not self._pins.vouches(msg.sender, sender_key):
            # Once per interval: a flood of refused attempts must not flood room and audit.
            if self._limiter.allow(msg.room_id, f"{msg.sender} confirm", time.monotonic()):
                logger.warning(
                    "%s tried to confirm an identity reset from a session the old identity "
                    "had not cross-signed",
                    msg.sender,
                )
                await self._audit(msg.sender, msg.room_id, Outcome.CONFIRM_REFUSED)
                await self._send_readable(msg.room_id, REFUSED)
            return
        if confirm_code(msg.body) != code:  # none, mistyped, or replayed from an older reset
            await self._send_readable(msg.room_id, explain(code))
            return
        await self._audit(msg.sender, msg.room_id, Outcome.CONFIRMED_BY_SESSION)
        self._pins.accept(msg.sender)
        self._changed()
        logger.info("%s confirmed their new identity from an earlier session", msg.sender)
        olm = self._client.olm
        if olm is not None:
            olm.users_for_key_query.add(msg.sender)  # judged again before the next answer
        # Readable by every session: the confirming one may not be signed by the new identity.
        await self._send_readable(msg.room_id, CONFIRMED)

    # ---- plumbing ------------------------------------------------------------------------

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    async def _fresh_keys(self) -> None:
        """Query outdated device lists first: the reset may be in this very sync."""
        if self._client.should_query_keys:
            with contextlib.suppress(Exception):  # another task's query answers it as well
                await self._client.keys_query()

    async def _send(self, room_id: RoomId, text: str) -> None:
        try:
            await self._actions.send_notice(room_id, text)
        except MatrixActionError as exc:
            logger.warning("Could not answer in %s: %s", room_id, exc.message)

    async def _send_readable(self, room_id: RoomId, text: str) -> None:
        try:
            await send_readable(self._client, room_id, text)
        except NoticeNotSent as exc:
            logger.warning("Could not explain a pending identity reset in %s: %s", room_id, exc)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:  # homeserver unreachable
            logger.warning(
                "Could not explain a pending identity reset in %s (%s)", room_id, type(exc).__name__
            )

    async def _audit(self, user_id: UserId, room_id: str, outcome: Outcome) -> None:
        logger.info("Identity reset of %s: %s", user_id, outcome.value)
        if self.audit is None:
            return
        try:
            await self.audit(user_id, room_id, AUDIT_COMMAND, outcome.value)
        except Exception as exc:  # the audit must not stop the answer
            logger.error("Could not write the audit line (%s)", type(exc).__name__)

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
