"""`CommandDispatcher.handle`: from a decrypted message to at most one run of one command.

Exactly once. Every message starting with ``!`` is first *claimed* in the store (its event
id committed in ``processed_commands``) before the command has any effect, and marked done
(with its audit line, same transaction) after the reply is sent. A redelivered event
(restart from an older sync token, duplicate delivery) is therefore never run twice:

- claimed and done: ignored;
- claimed but never finished (the bot stopped mid-command): commands whose second run is
  harmless (``!find``, ``!help``, ``!case invite``, ``!case close``) run again; the others
  (``!case new`` would open a second room) are not, and the requester is told to check the
  result and retry. Between a crash and a duplicate room we choose to ask.
  A ``!case close`` stopped after recording the close runs again though the case is closed,
  so the bot still leaves and the room is purged.

Events seen concurrently in this process are deduplicated in memory as well.
Logs name the command and the outcome, never the arguments or the body.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

from bot.bridge_client import DirectoryUnavailable
from bot.commands import texts
from bot.commands.builtin import default_registry
from bot.commands.context import (
    CommandSettings,
    IncomingMessage,
    MatrixActionError,
    MatrixActions,
)
from bot.commands.parsing import ArgumentError, parse_command_line
from bot.commands.policy import is_member_user, may_run
from bot.commands.registry import (
    CaseLifecycle,
    Command,
    DirectorySearch,
    Found,
    Incomplete,
    Invocation,
    Permission,
    Registry,
    Reply,
    Resolution,
    Scope,
    Services,
)
from bot.ids import EventId
from bot.store import BotStore, Claim

logger = logging.getLogger(__name__)


def _default_label_checker() -> Callable[[str], str | None]:
    # The guard's own detector: bot and homeservers refuse exactly the same labels.
    from bridge.guard.identifiers import find_patient_identifier

    return find_patient_identifier


class CommandDispatcher:
    """Runs the commands of one bot. Construct once; call `handle` for every text message.

    Args:
        actions: the Matrix side (the nio shell, or an in-memory fake in tests).
        store: the bot's database.
        directory: the bridge's directory client (`bot.bridge_client.DirectoryClient`).
        settings: the federation's policy (lifetimes, member servers).
        registry: the commands (default: all built-ins).
        lifecycle: hooks around ``!case close`` (the expiry engine's redaction and purge).
        label_checker: patient-identifier detector for case labels (default: the guard's;
            pass ``functools.partial(find_patient_identifier, extra=...)`` for extra patterns).
    """

    def __init__(
        self,
        *,
        actions: MatrixActions,
        store: BotStore,
        directory: DirectorySearch,
        settings: CommandSettings,
        registry: Registry | None = None,
        lifecycle: CaseLifecycle | None = None,
        label_checker: Callable[[str], str | None] | None = None,
    ) -> None:
        self._services = Services(
            actions=actions,
            store=store,
            directory=directory,
            settings=settings,
            lifecycle=lifecycle or CaseLifecycle(),
            label_checker=label_checker or _default_label_checker(),
        )
        self._registry = registry or default_registry()
        self._in_flight: set[EventId] = set()

    @property
    def registry(self) -> Registry:
        return self._registry

    async def handle(self, msg: IncomingMessage) -> None:
        """Handle one message; never raises for anything a user can cause."""
        line = parse_command_line(msg.body)
        if line is None:
            return
        services = self._services
        if msg.sender == services.actions.user_id:
            return
        if not is_member_user(msg.sender, services.settings.member_servers):
            logger.info("ignoring a command from a non-member server in %s", msg.room_id)
            return
        if msg.event_id in self._in_flight:
            return
        resolution = self._registry.resolve(line.words)
        name = resolution.command.name if isinstance(resolution, Found) else "unknown"
        self._in_flight.add(msg.event_id)
        try:
            claim = await services.store.claim_command(msg.event_id, msg.room_id, name)
            if claim is Claim.DONE:
                logger.info("command %s in %s already handled, skipped", name, msg.event_id)
                return
            outcome = "interrupted"
            reply: Reply | None = texts.plain(texts.INTERRUPTED)
            harmless = not isinstance(resolution, Found) or resolution.command.rerun_if_interrupted
            if claim is Claim.NEW or harmless:
                if claim is Claim.INTERRUPTED:
                    logger.info("command %s was interrupted; running it again", name)
                outcome, reply = await self._run(
                    msg, resolution, resuming=claim is Claim.INTERRUPTED
                )
            await self._reply(msg, reply)
            await services.store.finish_command(
                msg.event_id,
                sender=msg.sender,
                room_id=msg.room_id,
                command_name=name,
                outcome=outcome,
            )
            logger.info("command %s: %s", name, outcome)
        finally:
            self._in_flight.discard(msg.event_id)

    async def _reply(self, msg: IncomingMessage, reply: Reply | None) -> None:
        if reply is None:
            return
        try:
            await self._services.actions.send_notice(msg.room_id, reply.text, reply.html)
        except MatrixActionError as exc:
            logger.warning("could not reply in %s: %s", msg.room_id, exc.message)

    async def _run(
        self, msg: IncomingMessage, resolution: Resolution, *, resuming: bool = False
    ) -> tuple[str, Reply | None]:
        """Check scope, permission and syntax, then run. Returns (outcome, reply).

        ``resuming``: the same event was claimed by a run that never finished.
        """
        if isinstance(resolution, Incomplete):
            usages = "\n".join(c.usage for c in resolution.commands)
            return "usage", texts.usage_reply(None, usages)
        if not isinstance(resolution, Found):
            word = resolution.word
            if not word:
                return "unknown", texts.plain(texts.EMPTY_COMMAND)
            return "unknown", texts.plain(texts.UNKNOWN_COMMAND.format(word=word[:32]))
        command: Command[Any] = resolution.command
        services = self._services
        case = await services.store.get_case(msg.room_id)
        if command.scope is Scope.CASE_ROOM:
            if case is None:
                return "refused", texts.plain(texts.NOT_A_CASE_ROOM)
            if not case.is_open and not (resuming and command.resumes_closed_case):
                return "refused", texts.plain(texts.CASE_CLOSED)
        try:
            args = command.parse(resolution.args, services.settings)
        except ArgumentError as exc:
            return "usage", texts.usage_reply(exc.message, command.usage)
        power = 0
        if (
            command.permission is Permission.CASE_MANAGER
            and case is not None
            and msg.sender != case.creator
        ):
            try:
                power = await services.actions.power_level(msg.room_id, msg.sender)
            except MatrixActionError as exc:
                logger.warning("power level lookup failed in %s: %s", msg.room_id, exc.message)
        refusal = may_run(
            command.permission,
            sender=msg.sender,
            case=case if command.scope is Scope.CASE_ROOM else None,
            sender_power=power,
            member_servers=services.settings.member_servers,
        )
        if refusal is not None:
            return "forbidden", texts.plain(refusal)
        try:
            reply = await command.run(Invocation(services, msg, case), args)
        except ArgumentError as exc:
            return "usage", texts.usage_reply(exc.message, command.usage)
        except DirectoryUnavailable:
            return "directory_unavailable", texts.plain(texts.DIRECTORY_UNAVAILABLE)
        except MatrixActionError as exc:
            logger.warning("command %s: Matrix refused: %s", command.name, exc.message)
            return "matrix_error", texts.plain(texts.MATRIX_FAILED.format(reason=exc.message))
        except Exception as exc:
            # Type and place only: exception texts may quote arguments (SQL parameters...).
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            logger.error(
                "command %s failed: %s at %s:%d",
                command.name,
                type(exc).__name__,
                frame.filename,
                frame.lineno or 0,
            )
            return "error", texts.plain(texts.INTERNAL_ERROR)
        return "ok", reply
