"""``!case new``, ``!case invite``, ``!case close``: case rooms, from opening to closing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from html import escape
from typing import Any

from bot.cases.journal import CaseJournal
from bot.cases.lifetime import close_confirmation_text
from bot.cases.resume import FindsCreatedRoom
from bot.cases.warnings import warn_if_due
from bot.commands import texts
from bot.commands.context import (
    CommandSettings,
    CreationRefused,
    ListsInvitedMembers,
    MatrixActionError,
    MatrixActions,
)
from bot.commands.invitees import (
    Invitee,
    in_request_order,
    invite_all,
    resolve_invitees,
    summarise,
    to_invite,
)
from bot.commands.parsing import ArgumentError
from bot.commands.policy import (
    CaseNewArgs,
    WhoRef,
    check_label,
    parse_case_new,
    parse_invitees,
)
from bot.commands.registry import (
    CaseLifecycle,
    Command,
    Invocation,
    Permission,
    Reply,
    Scope,
)
from bot.commands.rooms import build_case_room_body, matrix_to_link
from bot.durations import format_duration
from bot.ids import RoomId, UserId, server_of
from bot.store import BotStore, CaseRoom

logger = logging.getLogger(__name__)

CLOSE_REASON = "Dossier clos / Case closed"
CONFIRM_WORDS = frozenset({"confirm", "confirmer"})


async def _find_or_create_room(
    invocation: Invocation,
    journal: CaseJournal,
    label: str,
    ttl_seconds: int,
    invite: Sequence[UserId],
) -> tuple[RoomId, bool]:
    """The case room of this request: the one an interrupted run created, else a new one
    with ``invite`` invited by the creation itself. Returns the room and whether everyone
    in ``invite`` is known to be invited.

    The intent is committed before the room is asked for and the room id right after, so
    whatever the moment the bot stops, the next run finds the room (by the journal, or by
    the request mark in the room's creation content) instead of opening a second one.
    """
    services, msg = invocation.services, invocation.message
    actions = services.actions
    request = await journal.begin_request(msg.event_id, msg.sender)
    room_id = request.room_id
    if room_id is None and not request.fresh and isinstance(actions, FindsCreatedRoom):
        recorded = await services.store.recorded_rooms()
        room_id = await actions.find_created_room(msg.event_id, skip=recorded)
    all_invited = False
    if room_id is None:

        def body(invite: Sequence[UserId]) -> dict[str, Any]:
            return build_case_room_body(
                label=label,
                requester=msg.sender,
                bot=actions.user_id,
                ttl_seconds=ttl_seconds,
                invite=invite,
                request=msg.event_id,
            )

        room_id, all_invited = await _create_with_invitations(actions, body, invite)
    else:
        logger.info("case request resumed: room %s already exists", room_id)
    if request.room_id is None:
        await journal.set_request_room(msg.event_id, room_id)
    if await services.store.get_case(room_id) is None:
        await services.store.add_case(
            CaseRoom(
                room_id=room_id,
                label=label,
                creator=msg.sender,
                ttl_seconds=ttl_seconds,
                created_ms=invocation.services.store.database.now_ms(),
            )
        )
    return room_id, all_invited


async def _create_with_invitations(
    actions: MatrixActions,
    body: Callable[[Sequence[UserId]], dict[str, Any]],
    invite: Sequence[UserId],
) -> tuple[RoomId, bool]:
    """Create the room with everyone invited in the same request; on a refusal, the room
    without them. Returns the room and whether everyone was invited.

    Inviting within the creation is what makes ``!case new`` quick: the homeserver writes
    the invitations right after the room's first events, without a request per person. But
    one refused invitation (a colleague's server down or refusing us) fails the whole
    request after the room exists. The shell names that room (`CreationRefused.room_id`)
    and the command goes on as a resumed one: the people already invited are kept, the
    others are invited one by one, so whoever refuses is reported and everyone else is
    invited.
    """
    try:
        return await actions.create_room(body(invite)), True
    except CreationRefused as exc:
        logger.info("case room creation with its invitations refused: %s", exc.message)
        if exc.room_id is not None:
            logger.info("case room %s exists: inviting one by one", exc.room_id)
            return exc.room_id, False
        if not exc.request_over:
            raise  # the room may still appear: never risk a second one
    return await actions.create_room(body(())), False


async def run_case_new(invocation: Invocation, args: CaseNewArgs) -> Reply:
    services, msg = invocation.services, invocation.message
    actions = services.actions
    label = check_label(args.label, services.label_checker)
    # Resolve first: if the directory is down, nothing gets created.
    invitees = await resolve_invitees(
        args.invitees, services.directory, services.settings.member_servers
    )
    requester = Invitee(str(msg.sender), user_id=msg.sender)
    todo = to_invite([requester, *invitees], skip={actions.user_id})
    # The requester last: the reply, which follows every invitation, brings them the link
    # anyway, and the colleagues, who have only the invitation, get it a little sooner.
    invite = [i.user_id for i in todo if i is not requester and i.user_id is not None]
    invite.append(msg.sender)
    journal = CaseJournal(services.store.database)
    room_id, all_invited = await _find_or_create_room(
        invocation, journal, label, args.ttl_seconds, invite
    )
    logger.info("case room %s created with %d invitee(s)", room_id, len(invitees))
    if all_invited:
        everyone = in_request_order(
            [requester, *invitees], {i.user_id: i for i in todo if i.user_id}
        )
        reached: list[Invitee] = []
    else:
        # Resumed, or the creation refused someone: invite only those not reached yet.
        present: set[UserId] = {actions.user_id}
        present.update(await actions.joined_members(room_id))
        if isinstance(actions, ListsInvitedMembers):
            present.update(await actions.invited_members(room_id))
        reached = [i for i in invitees if i.user_id in present and i.user_id != actions.user_id]
        everyone = await invite_all(
            actions, room_id, [requester, *invitees], skip=frozenset(present)
        )
    own = next((i for i in everyone if i.shown == requester.shown), requester)
    outcomes = [i for i in everyone if i is not own] + reached
    case = await services.store.get_case(room_id)
    if case is not None:
        await warn_if_due(actions, journal, case, services.store.database.now_ms())
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


def parse_case_close(args: Sequence[str], settings: CommandSettings) -> bool:
    """Nothing, or ``confirm`` (closing a case that was never exported)."""
    if not args:
        return False
    if len(args) == 1 and args[0].lower() in CONFIRM_WORDS:
        return True
    raise ArgumentError(
        "Seul argument possible : confirm. / The only possible argument is: confirm."
    )


async def run_case_close(invocation: Invocation, confirmed: bool) -> Reply | None:
    """Announce, let the expiry engine erase content, remove everyone, forget, leave.

    A case never exported is only closed with ``confirm``: the requester is reminded that
    nothing is left afterwards. Safe to run again after an interruption: members already
    removed are not listed any more, and a case already recorded as closed (the bot stopped
    before leaving) is finished: whoever is left removed, the bot leaves, the room is purged.
    """
    services, msg = invocation.services, invocation.message
    case = invocation.case
    assert case is not None  # the dispatcher only runs case-room commands in case rooms
    actions = services.actions
    if not case.is_open:  # resumed after the close was recorded: finish it
        await finish_close(actions, services.lifecycle, case)
        return None
    if (
        not confirmed
        and await CaseJournal(services.store.database).exported_ms(case.room_id) is None
    ):
        return Reply(close_confirmation_text())
    await actions.send_notice(
        msg.room_id,
        f"Dossier clos par {msg.sender} ; tous les membres vont être retirés de la salle. / "
        f"Case closed by {msg.sender}; all members are being removed from the room.",
    )
    await services.lifecycle.before_members_removed(case)
    try:
        removed = await _remove_everyone(actions, case.room_id)
        await services.store.close_case(msg.room_id)
    except BaseException:
        await services.lifecycle.close_aborted(case)  # the case stays open: run it again
        raise
    await actions.leave(case.room_id)
    await services.lifecycle.after_bot_left(case)
    logger.info("case room %s closed, %d member(s) removed", msg.room_id, removed)
    return None


async def _remove_everyone(actions: MatrixActions, room_id: RoomId) -> int:
    """Remove every member but the bot, and revoke pending invitations."""
    members = [m for m in await actions.joined_members(room_id) if m != actions.user_id]
    if isinstance(actions, ListsInvitedMembers):  # revoke pending invitations as well
        members += [m for m in await actions.invited_members(room_id) if m not in members]
    await asyncio.gather(*(actions.kick(room_id, m, CLOSE_REASON) for m in members))
    return len(members)


async def finish_close(actions: MatrixActions, lifecycle: CaseLifecycle, case: CaseRoom) -> None:
    """End a close that was recorded but not finished (the bot stopped before leaving):
    whoever is still there removed, the bot leaves, then the lifecycle's purge."""
    logger.info("case room %s: finishing an interrupted close", case.room_id)
    await _remove_everyone(actions, case.room_id)
    await actions.leave(case.room_id)
    await lifecycle.after_bot_left(case)


async def finish_interrupted_closes(
    actions: MatrixActions, store: BotStore, lifecycle: CaseLifecycle, joined: Sequence[str]
) -> int:
    """At start: finish the close of every closed case the bot is still in (``joined``: the
    bot's rooms). The interrupted command itself may never come back: a restarted bot's
    sync shows only the last few events of each room. Returns how many were finished."""
    done = 0
    for case in await store.closed_cases_among(joined):
        try:
            await finish_close(actions, lifecycle, case)
            done += 1
        except MatrixActionError as exc:
            logger.warning("case room %s: close not finished: %s", case.room_id, exc.message)
    return done


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
    rerun_if_interrupted=True,  # a second run resumes the first (journal, request mark)
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
    usage="!case close [confirm]",
    help_fr=(
        "Clôt le dossier : retire tous les membres de la salle, puis le bot la quitte. Un "
        "dossier jamais exporté (!case export) demande une confirmation : !case close confirm."
    ),
    help_en=(
        "Closes the case: removes every member from the room, then the bot leaves it. A case "
        "never exported (!case export) asks for confirmation: !case close confirm."
    ),
    examples=("!case close", "!case close confirm"),
    permission=Permission.CASE_MANAGER,
    scope=Scope.CASE_ROOM,
    rerun_if_interrupted=True,
    resumes_closed_case=True,  # stopped after recording the close: leave on the next run
    parse=parse_case_close,
    run=run_case_close,
)
