"""``!case new``, ``!case invite``, ``!case close``: case rooms, from opening to closing."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from html import escape

from bot.commands import texts
from bot.commands.context import ListsInvitedMembers
from bot.commands.invitees import Invitee, invite_all, resolve_invitees, summarise
from bot.commands.policy import (
    CaseNewArgs,
    WhoRef,
    check_label,
    parse_case_new,
    parse_invitees,
    parse_no_args,
)
from bot.commands.registry import Command, Invocation, Permission, Reply, Scope
from bot.commands.rooms import build_case_room_body, matrix_to_link
from bot.durations import format_duration
from bot.ids import server_of
from bot.store import CaseRoom

logger = logging.getLogger(__name__)

CLOSE_REASON = "Dossier clos / Case closed"


def _now_ms() -> int:
    return int(time.time() * 1000)


async def run_case_new(invocation: Invocation, args: CaseNewArgs) -> Reply:
    services, msg = invocation.services, invocation.message
    actions = services.actions
    label = check_label(args.label, services.label_checker)
    # Resolve first: if the directory is down, nothing gets created.
    invitees = await resolve_invitees(
        args.invitees, services.directory, services.settings.member_servers
    )
    body = build_case_room_body(
        label=label,
        requester=msg.sender,
        bot=actions.user_id,
        ttl_seconds=args.ttl_seconds,
    )
    # No invitations in the creation request: one refused invitation would fail it after
    # the room exists. The room is recorded first, then everyone is invited (concurrently).
    room_id = await actions.create_room(body)
    await services.store.add_case(
        CaseRoom(
            room_id=room_id,
            label=label,
            creator=msg.sender,
            ttl_seconds=args.ttl_seconds,
            created_ms=_now_ms(),
        )
    )
    logger.info("case room %s created with %d invitee(s)", room_id, len(invitees))
    requester = Invitee(str(msg.sender), user_id=msg.sender)
    everyone = await invite_all(
        actions, room_id, [requester, *invitees], skip=frozenset({actions.user_id})
    )
    own = next((i for i in everyone if i.shown == requester.shown), requester)
    outcomes = [i for i in everyone if i is not own]
    via = [actions.server_name, server_of(msg.sender)]
    via += [server_of(i.user_id) for i in outcomes if i.user_id is not None and not i.problem]
    link = matrix_to_link(room_id, via)
    lifetime = format_duration(args.ttl_seconds)
    lines = [
        f"Dossier « {label} » ouvert (messages effacés après {lifetime}) : {link}",
        f"Case “{label}” opened (messages erased after {lifetime}): {link}",
        *summarise(outcomes),
    ]
    if own.problem is not None:
        lines.append(
            f"Je n'ai pas pu vous inviter ({own.problem}) : utilisez le lien. / "
            f"I could not invite you ({own.problem}): use the link."
        )
    html_lines = [
        f"Dossier « {escape(label)} » ouvert (messages effacés après {lifetime}) / "
        f"Case “{escape(label)}” opened (messages erased after {lifetime}): "
        f'<a href="{escape(link)}">{escape(link)}</a>',
        *map(escape, lines[2:]),
    ]
    return Reply("\n".join(lines), "<br>".join(html_lines))


async def run_case_invite(invocation: Invocation, refs: Sequence[WhoRef]) -> Reply:
    services, msg = invocation.services, invocation.message
    invitees = await resolve_invitees(refs, services.directory, services.settings.member_servers)
    members = frozenset(await services.actions.joined_members(msg.room_id))
    outcomes = await invite_all(
        services.actions, msg.room_id, invitees, skip=members | {services.actions.user_id}
    )
    lines = summarise(outcomes) or [
        "Ces personnes sont déjà dans la salle. / These people are already in the room."
    ]
    return texts.plain("\n".join(lines))


async def run_case_close(invocation: Invocation, args: None) -> Reply | None:
    """Announce, let the expiry engine erase content, remove everyone, forget, leave.

    Safe to run again after an interruption: members already removed are not listed any
    more, and closing an already closed case changes nothing.
    """
    services, msg = invocation.services, invocation.message
    case = invocation.case
    assert case is not None  # the dispatcher only runs case-room commands in case rooms
    actions = services.actions
    await actions.send_notice(
        msg.room_id,
        f"Dossier clos par {msg.sender} ; tous les membres vont être retirés de la salle. / "
        f"Case closed by {msg.sender}; all members are being removed from the room.",
    )
    await services.lifecycle.before_members_removed(case)
    try:
        members = [m for m in await actions.joined_members(msg.room_id) if m != actions.user_id]
        if isinstance(actions, ListsInvitedMembers):  # revoke pending invitations as well
            members += [m for m in await actions.invited_members(msg.room_id) if m not in members]
        await asyncio.gather(*(actions.kick(msg.room_id, m, CLOSE_REASON) for m in members))
        await services.store.close_case(msg.room_id)
    except BaseException:
        await services.lifecycle.close_aborted(case)  # the case stays open: run it again
        raise
    await actions.leave(msg.room_id)
    await services.lifecycle.after_bot_left(case)
    logger.info("case room %s closed, %d member(s) removed", msg.room_id, len(members))
    return None


CASE_NEW = Command(
    path=("case", "new"),
    aliases=(("dossier", "nouveau"),),
    usage="!case new <label> [who ...] [ttl=<duration>]",
    help_fr=(
        "Ouvre une salle de dossier chiffrée, sur invitation, avec un libellé pseudonyme "
        "(jamais de nom ni de numéro de patient). Invités : identifiants Matrix ou numéros "
        "RPPS. ttl= fixe la durée de vie des messages (30s, 15m, 24h, 7d, 4w)."
    ),
    help_en=(
        "Opens an encrypted, invite-only case room with a pseudonymous label (never a "
        "patient's name or number). Invitees: Matrix IDs or RPPS numbers. ttl= sets how long "
        "messages live (30s, 15m, 24h, 7d, 4w)."
    ),
    examples=(
        "!case new genou-droit-72 @dr.martin:hopital.example 10001234567 ttl=7d",
        '!case new "avis cardio lit 12"',
    ),
    permission=Permission.MEMBER,
    scope=Scope.ANYWHERE,
    rerun_if_interrupted=False,  # a second run would open a second room
    parse=parse_case_new,
    run=run_case_new,
)

CASE_INVITE = Command(
    path=("case", "invite"),
    aliases=(("dossier", "inviter"),),
    usage="!case invite <who> [who ...]",
    help_fr="Invite des confrères dans cette salle de dossier (identifiant Matrix ou RPPS).",
    help_en="Invites colleagues into this case room (Matrix ID or RPPS number).",
    examples=("!case invite @dr.durand:clinique.example", "!case invite 10009876543"),
    permission=Permission.CASE_MANAGER,
    scope=Scope.CASE_ROOM,
    rerun_if_interrupted=True,  # inviting someone already invited changes nothing
    parse=parse_invitees,
    run=run_case_invite,
)

CASE_CLOSE = Command(
    path=("case", "close"),
    aliases=(("dossier", "clore"),),
    usage="!case close",
    help_fr="Clôt le dossier : retire tous les membres de la salle, puis le bot la quitte.",
    help_en="Closes the case: removes every member from the room, then the bot leaves it.",
    examples=("!case close",),
    permission=Permission.CASE_MANAGER,
    scope=Scope.CASE_ROOM,
    rerun_if_interrupted=True,
    parse=parse_no_args,
    run=run_case_close,
)
