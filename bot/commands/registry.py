"""The one command registry: each command declares its words, usage, help, examples, who may
run it and where. Help text, usage replies and permission checks are all derived from these
declarations, so a command cannot be added without its documentation.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from bot.commands.context import CommandSettings, IncomingMessage, MatrixActions

if TYPE_CHECKING:
    from bot.bridge_client import SearchPage
    from bot.store import BotStore, CaseRoom

A = TypeVar("A")


class Permission(enum.Enum):
    """Who may run a command (checked by `bot.commands.policy.may_run`)."""

    MEMBER = "member"
    """Any practitioner whose homeserver is a member of the federation."""
    CASE_MANAGER = "case_manager"
    """In a case room: the practitioner who opened it, or a room admin (power level 100)."""


class Scope(enum.Enum):
    """Where a command makes sense."""

    ANYWHERE = "anywhere"
    CASE_ROOM = "case_room"
    """Only inside an open case room created by the bot."""


@dataclass(frozen=True)
class Reply:
    """What the bot answers: plain text always, HTML for clients that render it."""

    text: str
    html: str | None = None


class DirectorySearch(Protocol):
    """What the commands need of the directory (`bot.bridge_client.DirectoryClient` fits)."""

    async def search(self, query: str, *, limit: int = 10, offset: int = 0) -> SearchPage: ...


class CaseLifecycle:
    """Hooks around ``!case close``; the expiry engine overrides them (redact, purge).

    The defaults do nothing, so closing a case removes members and forgets the room.
    """

    async def before_members_removed(self, case: CaseRoom) -> None:
        """Called while everyone (and the bot) is still in the room: redact content here."""

    async def after_bot_left(self, case: CaseRoom) -> None:
        """Called once the room is empty of the bot: purge it from the homeserver here."""

    async def close_aborted(self, case: CaseRoom) -> None:
        """Called when removing the members failed after `before_members_removed`: the case
        stays open, so whatever the close changed for new messages is undone here."""


@dataclass(frozen=True)
class Services:
    """What command handlers work with. Built once by the dispatcher."""

    actions: MatrixActions
    store: BotStore
    directory: DirectorySearch
    settings: CommandSettings
    lifecycle: CaseLifecycle
    label_checker: Callable[[str], str | None]
    """Returns why a case label is refused (patient identifier), or None if acceptable."""


@dataclass(frozen=True)
class Invocation:
    """One run of one command: the services, the message, and the case room it is in."""

    services: Services
    message: IncomingMessage
    case: CaseRoom | None


Parser = Callable[[Sequence[str], CommandSettings], A]
Handler = Callable[[Invocation, A], Awaitable[Reply | None]]
"""A handler returns the reply to post in the room, or None when it answered itself."""


@dataclass(frozen=True)
class Command(Generic[A]):
    """A command's declaration.

    Attributes:
        path: the words after ``!``, e.g. ``("case", "new")``; matched case-insensitively.
        usage: the syntax as shown to users.
        help_fr / help_en: one or two sentences, shown by ``!help``.
        examples: full command lines, shown by ``!help``.
        permission / scope: who may run it, and where.
        rerun_if_interrupted: whether running it twice is harmless (a search) - if the bot
            stopped in the middle, a redelivered event is then simply run again; otherwise
            the requester is told to check and retry.
        parse: pure; turns the argument words into the handler's arguments or raises
            `ArgumentError` (the reply then shows `usage`).
        run: the effect.
        resumes_closed_case: an interrupted run is run again even when the case is already
            closed (``!case close`` stopped after recording the close: it must still leave).
    """

    path: tuple[str, ...]
    usage: str
    help_fr: str
    help_en: str
    examples: tuple[str, ...]
    permission: Permission
    scope: Scope
    rerun_if_interrupted: bool
    parse: Parser[A]
    run: Handler[A]
    aliases: tuple[tuple[str, ...], ...] = ()
    resumes_closed_case: bool = False

    @property
    def name(self) -> str:
        """The name recorded in the store and logs, e.g. ``case new``."""
        return " ".join(self.path)


@dataclass(frozen=True)
class Found:
    command: Command[Any]
    args: tuple[str, ...]


@dataclass(frozen=True)
class Incomplete:
    """The first word names a group (``!case``) but no known sub-command follows."""

    group: str
    commands: tuple[Command[Any], ...]


@dataclass(frozen=True)
class Unknown:
    word: str


Resolution = Found | Incomplete | Unknown


@dataclass
class Registry:
    """The commands, in the order ``!help`` lists them."""

    commands: list[Command[Any]] = field(default_factory=list)

    def add(self, command: Command[Any]) -> None:
        taken = {p for c in self.commands for p in (c.path, *c.aliases)}
        for path in (command.path, *command.aliases):
            if path in taken:
                raise ValueError(f"command {' '.join(path)!r} declared twice")
            if not path or any(w != w.lower() or not w for w in path):
                raise ValueError(f"command words must be lower-case and non-empty: {path!r}")
        self.commands.append(command)

    def extend(self, commands: Iterable[Command[Any]]) -> None:
        for command in commands:
            self.add(command)

    def resolve(self, words: Sequence[str]) -> Resolution:
        """Find the command named by the first words (longest match wins). Pure."""
        lowered = tuple(w.lower() for w in words)
        best: tuple[int, Command[Any]] | None = None
        for command in self.commands:
            for path in (command.path, *command.aliases):
                if lowered[: len(path)] == path and (best is None or len(path) > best[0]):
                    best = (len(path), command)
        if best is not None:
            return Found(best[1], tuple(words[best[0] :]))
        first = lowered[0] if lowered else ""
        group = tuple(c for c in self.commands if len(c.path) > 1 and c.path[0] == first)
        if group:
            return Incomplete(first, group)
        return Unknown(first)
