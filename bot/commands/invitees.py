"""From what the requester typed (Matrix IDs, RPPS numbers) to people the bot may invite.

Resolution happens before anything is created, so a directory outage stops ``!case new``
cleanly instead of leaving a half-populated room. Each person gets an outcome the reply can
explain: invited, not on the network yet, not a member server, unknown number, refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass

from bot.commands import texts
from bot.commands.context import MatrixActionError, MatrixActions
from bot.commands.policy import MatrixRef, WhoRef, is_member_user
from bot.commands.registry import DirectorySearch
from bot.ids import RoomId, UserId


@dataclass(frozen=True)
class Invitee:
    """One person asked for. ``user_id`` is set when they can be invited; else ``problem``."""

    shown: str
    user_id: UserId | None = None
    problem: str | None = None


async def resolve_invitees(
    refs: Sequence[WhoRef],
    directory: DirectorySearch,
    member_servers: Container[str],
) -> list[Invitee]:
    """Look RPPS numbers up in the directory; check every Matrix ID's server.

    Raises:
        DirectoryUnavailable: the directory could not answer (nothing should be created).
    """
    out: list[Invitee] = []
    for ref in refs:
        if isinstance(ref, MatrixRef):
            user_id, shown = ref.user_id, str(ref.user_id)
        else:
            page = await directory.search(ref.number, limit=5)
            match = next((p for p in page.results if p.rpps == ref.number), None)
            if match is None:
                out.append(Invitee(ref.number, problem=texts.UNKNOWN_REGISTER_NUMBER))
                continue
            shown = f"{match.display_name} (RPPS {match.rpps})"
            if match.matrix_id is None:
                out.append(Invitee(shown, problem=texts.NOT_ON_NETWORK))
                continue
            user_id = match.matrix_id
        if not is_member_user(user_id, member_servers):
            out.append(Invitee(shown, problem=texts.NOT_MEMBER_SERVER))
        else:
            out.append(Invitee(shown, user_id=user_id))
    return out


def to_invite(invitees: Sequence[Invitee], skip: Container[UserId]) -> list[Invitee]:
    """Those of ``invitees`` who can be invited, once each, leaving out ``skip``."""
    seen: set[UserId] = set()
    todo: list[Invitee] = []
    for invitee in invitees:
        user_id = invitee.user_id
        if user_id is not None and user_id not in skip and user_id not in seen:
            seen.add(user_id)
            todo.append(invitee)
    return todo


def in_request_order(
    invitees: Sequence[Invitee], results: Mapping[UserId, Invitee]
) -> list[Invitee]:
    """Outcomes in the order people were asked for: the unresolvable ones as they are, each
    invited person once (their result in ``results``), the others (skipped) left out."""
    pending = dict(results)
    out: list[Invitee] = []
    for invitee in invitees:
        if invitee.user_id is None:
            out.append(invitee)
        elif invitee.user_id in pending:
            out.append(pending.pop(invitee.user_id))
    return out


async def invite_all(
    actions: MatrixActions,
    room_id: RoomId,
    invitees: Sequence[Invitee],
    skip: frozenset[UserId],
) -> list[Invitee]:
    """Invite everyone resolvable (concurrently); returns outcomes with refusals filled in.

    People in ``skip`` (the requester, the bot) are left out silently; duplicates once.
    """
    todo = to_invite(invitees, skip)

    async def one(invitee: Invitee) -> Invitee:
        assert invitee.user_id is not None
        try:
            await actions.invite(room_id, invitee.user_id)
        except MatrixActionError as exc:
            return Invitee(invitee.shown, problem=exc.message)
        return invitee

    results = await asyncio.gather(*(one(i) for i in todo))
    return in_request_order(
        invitees, {i.user_id: r for i, r in zip(todo, results, strict=True) if i.user_id}
    )


def summarise(outcomes: Sequence[Invitee]) -> list[str]:
    """Reply lines: who was invited, and who was not and why (FR / EN)."""
    lines: list[str] = []
    invited = [i.shown for i in outcomes if i.problem is None]
    if invited:
        lines.append("Invité(s) / Invited: " + ", ".join(invited))
    for i in outcomes:
        if i.problem is not None:
            lines.append(f"Non invité / Not invited: {i.shown} — {i.problem}")
    return lines
