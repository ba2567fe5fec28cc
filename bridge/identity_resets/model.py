"""The bot's report of pending identity resets: reading it, and what changed (pure, no I/O).

The bot sends its whole list each time (it is short: doctors waiting for a confirmation), plus
how each reset that left the list since its last report ended. The bridge compares the list
with the one it kept, so each reset is audited once when it appears and once when it ends,
however often the bot repeats the list (at each start, after each retry).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from bridge.guard.ids import user_id_server

MAX_PENDING: Final = 2000
"""More doctors held at once than this is not a report the bot would send."""
MASTER_KEY = re.compile(r"^[A-Za-z0-9+/]{43}$")
"""An Ed25519 public key as Matrix writes it (unpadded base64)."""
OUTCOMES: Final = frozenset(
    {"confirmed-by-session", "accepted-by-operator", "forgotten-by-operator"}
)
"""How a reset ends, in the bot's words (`bot.identity.texts.Outcome`)."""
UNKNOWN_OUTCOME: Final = "no-longer-pending"
"""A reset that left the list without the bot saying how (it restarted in between)."""
MAX_MS: Final = 253402300799999  # 9999-12-31T23:59:59.999Z


class ReportError(ValueError):
    """The report is not what the bot sends; the message says what is wrong (no content)."""


@dataclass(frozen=True, slots=True)
class PendingReset:
    """One doctor held by the bot: their new master key is not accepted yet."""

    user_id: str
    since: datetime
    master_key: str
    """The new, pending, public master key."""
    pinned_master_key: str
    """The public master key the bot trusts for them ("" when it had none)."""


@dataclass(frozen=True, slots=True)
class Report:
    bot: str
    """The reporting bot's Matrix ID."""
    pending: tuple[PendingReset, ...]
    resolved: Mapping[str, str]
    """User -> how their reset ended, for those that left the list since the last report."""


@dataclass(frozen=True, slots=True)
class Changes:
    """What a report changed, each to be audited."""

    appeared: tuple[PendingReset, ...]
    """New resets, and resets whose pending key changed (a second reset while held)."""
    ended: tuple[tuple[str, str], ...]
    """(user, outcome) of resets that left the list."""


def _user_id(value: object, where: str) -> str:
    if not isinstance(value, str) or len(value) > 255 or user_id_server(value) is None:
        raise ReportError(f"{where} must be a Matrix user ID")
    return value


def _key(value: object, where: str, *, empty: bool = False) -> str:
    if isinstance(value, str) and (MASTER_KEY.match(value) or (empty and value == "")):
        return value
    raise ReportError(f"{where} must be a public Ed25519 key (unpadded base64)")


def _entry(item: object, index: int) -> PendingReset:
    where = f"pending[{index}]"
    if not isinstance(item, Mapping):
        raise ReportError(f"{where} must be an object")
    since_ms = item.get("since_ms")
    if isinstance(since_ms, bool) or not isinstance(since_ms, int) or not 0 <= since_ms <= MAX_MS:
        raise ReportError(f"{where}.since_ms must be a time in milliseconds")
    return PendingReset(
        user_id=_user_id(item.get("user_id"), f"{where}.user_id"),
        since=datetime.fromtimestamp(since_ms / 1000, UTC),
        master_key=_key(item.get("master_key"), f"{where}.master_key"),
        pinned_master_key=_key(
            item.get("pinned_master_key", ""), f"{where}.pinned_master_key", empty=True
        ),
    )


def parse_report(body: Any) -> Report:
    """Read the JSON body of a report; raises `ReportError` naming the first problem."""
    if not isinstance(body, Mapping):
        raise ReportError("the body must be a JSON object")
    bot = _user_id(body.get("bot"), "bot")
    raw = body.get("pending")
    if not isinstance(raw, list):
        raise ReportError("pending must be a list")
    if len(raw) > MAX_PENDING:
        raise ReportError(f"pending lists at most {MAX_PENDING} resets")
    pending = tuple(_entry(item, i) for i, item in enumerate(raw))
    if len({p.user_id for p in pending}) != len(pending):
        raise ReportError("pending lists a user twice")
    ended = body.get("resolved", [])
    if not isinstance(ended, list) or len(ended) > MAX_PENDING:
        raise ReportError("resolved must be a list")
    resolved: dict[str, str] = {}
    for i, item in enumerate(ended):
        if not isinstance(item, Mapping):
            raise ReportError(f"resolved[{i}] must be an object")
        outcome = item.get("outcome")
        if outcome not in OUTCOMES:
            raise ReportError(f"resolved[{i}].outcome must be one of {', '.join(sorted(OUTCOMES))}")
        resolved[_user_id(item.get("user_id"), f"resolved[{i}].user_id")] = str(outcome)
    return Report(bot=bot, pending=pending, resolved=resolved)


def changes(previous: Mapping[str, PendingReset], report: Report) -> Changes:
    """What `report` changes compared with the list kept from the same bot (`previous`)."""
    now = {p.user_id: p for p in report.pending}
    appeared = tuple(
        p
        for p in report.pending
        if p.user_id not in previous or previous[p.user_id].master_key != p.master_key
    )
    ended = tuple(
        (user, report.resolved.get(user, UNKNOWN_OUTCOME))
        for user in sorted(previous)
        if user not in now
    )
    return Changes(appeared=appeared, ended=ended)
