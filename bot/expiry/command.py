"""``!expire``: show or change how long a case room's messages live.

Anyone in the case room may ask what the policy is (``!expire`` alone): members should know
when their messages disappear. Changing it (``!expire 7d``) is for the practitioner who
opened the case or a room admin, within the federation's bounds; the reply is posted in the
room, so every member sees the change and who made it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.cases.lifetime import lifetime_topic
from bot.commands.context import CommandSettings
from bot.commands.parsing import ArgumentError
from bot.commands.policy import may_run, parse_ttl
from bot.commands.registry import Command, Invocation, Permission, Reply, Scope
from bot.durations import format_duration
from bot.expiry.engine import ExpiryEngine
from bot.expiry.policy import RETENTION_EVENT, retention_content


@dataclass(frozen=True)
class ExpireArgs:
    """``seconds`` None: show the policy; otherwise the new lifetime (already bounded)."""

    seconds: int | None


def parse_expire(args: Sequence[str], settings: CommandSettings) -> ExpireArgs:
    """No argument, or one duration (``30s``, ``15m``, ``24h``, ``7d``, ``4w``, ``1d12h``)."""
    if not args:
        return ExpireArgs(None)
    if len(args) > 1:
        raise ArgumentError(
            "Une seule durée, sans espace (ex. : 1d12h). / One duration, without spaces "
            "(e.g. 1d12h)."
        )
    return ExpireArgs(parse_ttl(args[0], settings))


def _in(ms: int) -> str:
    return format_duration(max(1, round(ms / 1000)))


def describe_policy(ttl_seconds: int, next_due_ms: int | None, now_ms: int) -> str:
    """The policy as members read it, with when the next message disappears. Pure."""
    lifetime = format_duration(ttl_seconds)
    text = (
        f"Les messages de cette salle sont effacés {lifetime} après leur envoi. / "
        f"Messages in this room are erased {lifetime} after they are sent."
    )
    if next_due_ms is None:
        return text + "\nAucun message en attente d'effacement. / No message waiting to expire."
    if next_due_ms <= now_ms:
        return text + "\nProchain effacement : maintenant. / Next message expires: now."
    when = _in(next_due_ms - now_ms)
    return text + f"\nProchain effacement dans {when}. / Next message expires in {when}."


def describe_change(sender: str, old_seconds: int, new_seconds: int) -> str:
    """The announcement of a change, posted in the room. Pure."""
    old, new = format_duration(old_seconds), format_duration(new_seconds)
    return (
        f"{sender} a changé la durée de vie des messages : {old} → {new}. Elle s'applique aussi "
        f"aux messages déjà envoyés. / {sender} changed the message lifetime: {old} → {new}. "
        "It applies to messages already sent too."
    )


def expire_command(engine: ExpiryEngine) -> Command[ExpireArgs]:
    """The ``!expire`` declaration, bound to the running expiry engine."""

    async def run(invocation: Invocation, args: ExpireArgs) -> Reply:
        services, msg, case = invocation.services, invocation.message, invocation.case
        assert case is not None  # scope CASE_ROOM: the dispatcher checked
        if args.seconds is None:
            next_due = await engine.next_expiry_ms(msg.room_id)
            return Reply(describe_policy(case.ttl_seconds, next_due, engine.now_ms()))
        power = 0
        if msg.sender != case.creator:
            power = await services.actions.power_level(msg.room_id, msg.sender)
        refusal = may_run(
            Permission.CASE_MANAGER,
            sender=msg.sender,
            case=case,
            sender_power=power,
            member_servers=services.settings.member_servers,
        )
        if refusal is not None:
            return Reply(refusal)
        # Homeservers first: if the room refuses the new policy, nothing else changes.
        await services.actions.put_state(
            msg.room_id, RETENTION_EVENT, retention_content(args.seconds * 1000)
        )
        await engine.set_lifetime(msg.room_id, args.seconds)
        # Everyone sees the lifetime in the topic, not only in this reply (which expires).
        await services.actions.put_state(
            msg.room_id, "m.room.topic", {"topic": lifetime_topic(args.seconds)}
        )
        return Reply(describe_change(msg.sender, case.ttl_seconds, args.seconds))

    return Command(
        path=("expire",),
        aliases=(("expiration",),),
        usage="!expire [<duration>]",
        help_fr=(
            "Sans argument : indique la durée de vie des messages de la salle et le prochain "
            "effacement. Avec une durée (30s, 15m, 24h, 7d, 4w) : la change, dans les limites "
            "de la fédération (créateur du dossier ou administrateur de la salle)."
        ),
        help_en=(
            "Alone: shows how long this room's messages live and when the next one expires. "
            "With a duration (30s, 15m, 24h, 7d, 4w): changes it, within the federation's "
            "bounds (the case's creator or a room admin)."
        ),
        examples=("!expire", "!expire 7d"),
        permission=Permission.MEMBER,
        scope=Scope.CASE_ROOM,
        rerun_if_interrupted=True,  # setting the same lifetime twice changes nothing
        parse=parse_expire,
        run=run,
    )
