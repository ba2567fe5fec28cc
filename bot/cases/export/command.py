"""``!case export [pdf|fhir]``: the case's creator (or a room admin) gets a copy of what the
room still holds, as an encrypted attachment in their DM with the bot, never in the case room.

Exactly once: before anything is sent, the DM is recorded under the command's event id (the
intent), and the message goes out with a transaction id fixed by that event id. A run that
finds the intent (the bot stopped around the delivery) looks in the DM for that message and
sends nothing if it is there; if it sends again, the homeserver keeps the first message of
that transaction. The DM is the one recorded for the requester (the room they invited the bot
to as a direct chat, or the last one the bot opened for them), checked to hold the two of
them and nobody else; a requester without one gets a new DM (encrypted, with the
federation's default lifetime); the case room is only told that the export went there.
The export's message is redacted on the DM's lifetime by the expiry engine. The bot keeps
no copy (the archive lives in memory during the command); the audit line says who exported
which case and when (the dispatcher writes it), never what.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from bot.bridge_client import DirectoryUnavailable, Practitioner
from bot.cases.export.model import Attachment, CaseExport, Member, RawEvent
from bot.cases.export.render import render_zip
from bot.cases.export.resolve import file_info, resolve_messages
from bot.cases.journal import CaseJournal
from bot.commands.context import CommandSettings, ListsInvitedMembers, MatrixActionError
from bot.commands.parsing import ArgumentError
from bot.commands.registry import (
    Command,
    DirectorySearch,
    Invocation,
    Permission,
    Reply,
    Scope,
    Services,
)
from bot.ids import EventId, RoomId, UserId
from bot.store import BotStore

logger = logging.getLogger(__name__)

EXPORT_NAME = "case export"
FORMATS = {"pdf": frozenset({"pdf"}), "fhir": frozenset({"fhir"})}
BOTH = frozenset({"pdf", "fhir"})


@dataclass(frozen=True)
class ExportLimits:
    max_messages: int = 2000
    max_attachment_bytes: int = 50 * 1024 * 1024


@dataclass(frozen=True)
class Delivery:
    """The export's message in the DM: what the expiry engine needs to erase it later."""

    event_id: EventId
    sent_ms: int
    media: tuple[str, ...] = ()


class ExportPort(Protocol):
    async def read_messages(self, room_id: RoomId, limit: int) -> list[RawEvent]: ...

    async def download(self, content: dict[str, Any]) -> bytes: ...

    def member_name(self, room_id: RoomId, user_id: str) -> str: ...

    def direct_room(self, user_id: str, exclude: set[str]) -> RoomId | None: ...

    async def open_direct_room(self, user_id: UserId, lifetime_s: int) -> RoomId:
        """A new encrypted DM with ``user_id`` (invited), its messages living ``lifetime_s``."""
        ...

    async def lifetime_ms(self, room_id: RoomId) -> int | None:
        """The room's ``m.room.retention`` lifetime; None when it sets none."""
        ...

    async def find_delivery(self, room_id: RoomId, txn_id: str, since_ms: int) -> Delivery | None:
        """The message the bot sent in ``room_id`` with ``txn_id`` since ``since_ms``, if any."""
        ...

    async def deliver(
        self, room_id: RoomId, filename: str, data: bytes, caption: str, txn_id: str
    ) -> Delivery:
        """Upload ``data`` encrypted and post it; the message carries ``txn_id`` (and the
        caption ``txn_id`` plus a suffix), so the homeserver keeps one of each however many
        times a restarted bot repeats the same delivery."""
        ...


class ExportExpiry(Protocol):
    """The expiry engine, as the export needs it (`bot.expiry.engine.ExpiryEngine` fits)."""

    async def expire_own_event(
        self,
        room_id: RoomId,
        event_id: EventId,
        origin_server_ts: int,
        lifetime_ms: int,
        media: Sequence[str] = (),
    ) -> None: ...


@runtime_checkable
class KnowsAccounts(Protocol):
    """The directory's lookup of Matrix accounts (`bot.bridge_client.DirectoryClient`)."""

    async def accounts(self, user_ids: Sequence[UserId]) -> dict[UserId, Practitioner]: ...


async def _recorded_direct_room(
    services: Services, user_id: UserId, *, exclude: RoomId
) -> RoomId | None:
    """``user_id``'s recorded direct conversation with the bot, if it still holds the two of
    them and nobody else, joined or invited (two requests, however many rooms the bot is
    in). The requester may still be invited only: a DM the bot opened for an earlier export
    that they have not accepted yet is used again, not doubled. A record that no longer
    holds is forgotten. The rooms held in memory are looked at next
    (`ExportPort.direct_room`): conversations from before the bot recorded them."""
    store = services.store
    room = await store.direct_room(user_id)
    if room is None or room == exclude:
        return None
    actions = services.actions
    if not isinstance(actions, ListsInvitedMembers):
        return None  # pending invitations unknown: the record cannot be checked
    try:
        joined = set(await actions.joined_members(room))
        if actions.user_id in joined and joined <= {user_id, actions.user_id}:
            invited = set(await actions.invited_members(room))
            if joined | invited == {user_id, actions.user_id} and invited <= {user_id}:
                return room
    except MatrixActionError:
        pass  # the bot is no longer in it
    logger.info("direct room %s no longer holds the requester and the bot alone", room)
    await store.forget_direct_room(user_id, room)
    return None


def delivery_txn_id(command_event: str) -> str:
    """The transaction id of an export's message, fixed by the command that asked for it. Pure.

    Hashed: a transaction id travels in request paths, the event id's characters need not.
    """
    return "caducee-export-" + hashlib.sha256(command_event.encode()).hexdigest()[:32]


def parse_export(args: Sequence[str], settings: CommandSettings) -> frozenset[str]:
    if not args:
        return BOTH
    if len(args) == 1 and args[0].lower() in FORMATS:
        return FORMATS[args[0].lower()]
    raise ArgumentError(
        "Formats : pdf ou fhir (les deux par défaut). / Formats: pdf or fhir (both by default)."
    )


UNVERIFIED = "nom affiché, non vérifié / display name, unverified"


async def _members(
    directory: DirectorySearch, port: ExportPort, room_id: RoomId, user_ids: list[UserId]
) -> list[Member]:
    """The case's members as filed: the register's name and RPPS for accounts onboarding
    linked to a practitioner; the others by Matrix ID, their display name marked as theirs.

    Never looked up by display name: any account sets its own, a colleague's included.
    """
    linked: dict[UserId, Practitioner] = {}
    if isinstance(directory, KnowsAccounts):
        try:
            linked = await directory.accounts(user_ids)
        except DirectoryUnavailable:
            logger.warning("export: directory unavailable, members filed without RPPS")
    members = []
    for user_id in user_ids:
        found = linked.get(user_id)
        if found is not None:
            members.append(Member(user_id, found.display_name, found.rpps))
            continue
        shown = port.member_name(room_id, user_id)
        name = user_id if shown == user_id else f"{shown} ({UNVERIFIED})"
        members.append(Member(user_id, name, None))
    return members


def _size(content: dict[str, Any]) -> int:
    info = content.get("info")
    size = info.get("size") if isinstance(info, dict) else None
    return size if isinstance(size, int) and size > 0 else 0


def too_big(events: list[RawEvent], limits: ExportLimits) -> str | None:
    """Why the case is too big to export, or None. Pure."""
    if len(events) > limits.max_messages:
        return (
            f"Ce dossier compte plus de {limits.max_messages} messages : trop pour un export. / "
            f"This case holds more than {limits.max_messages} messages: too many to export."
        )
    total = sum(_size(e.content) for e in events if file_info(e.content) and e.content)
    return attachments_too_big(total, limits)


def attachments_too_big(total: int, limits: ExportLimits) -> str | None:
    """Why these attachment bytes are too much, or None. Pure."""
    if total > limits.max_attachment_bytes:
        mb = limits.max_attachment_bytes // (1024 * 1024)
        return (
            f"Les pièces jointes dépassent {mb} Mo : trop pour un export. / "
            f"The attachments exceed {mb} MB: too much to export."
        )
    return None


async def after_delivery(
    port: ExportPort,
    expiry: ExportExpiry | None,
    default_lifetime_s: int,
    journal: CaseJournal,
    case_room: RoomId,
    dm: RoomId,
    delivery: Delivery,
) -> None:
    """After the delivery: its expiry scheduled on the DM's lifetime, the case marked
    exported. Both are idempotent, so a resumed run may repeat them."""
    if expiry is not None:
        lifetime = await port.lifetime_ms(dm)
        if lifetime is None:
            lifetime = default_lifetime_s * 1000
        await expiry.expire_own_event(
            dm, delivery.event_id, delivery.sent_ms, lifetime, delivery.media
        )
    await journal.mark_exported(case_room, at_ms=delivery.sent_ms)


async def finish_interrupted_exports(
    port: ExportPort,
    store: BotStore,
    *,
    expiry: ExportExpiry | None = None,
    default_lifetime_s: int = 7 * 86400,
) -> int:
    """At start: finish the exports a stopped bot had sent but not recorded.

    The interrupted command may never come back (a restarted bot's sync shows only each
    room's last few events): for each export whose DM was recorded and whose command never
    finished, the DM is searched for its message; when it is there, its expiry is scheduled,
    the case marked exported and the command marked done (so a late redelivery changes
    nothing). The requester has the file and its caption in the DM; no second notice goes to
    the case room, which a redelivered command running meanwhile would answer too. An export
    not found was not sent: nothing is done (a redelivered command sends it). Returns how
    many were finished.
    """
    journal = CaseJournal(store.database)
    finished = 0
    for intent in await journal.interrupted_intents(EXPORT_NAME):
        try:
            found = await port.find_delivery(
                intent.room_id, delivery_txn_id(intent.event_id), intent.started_ms
            )
            if found is None:
                continue
            await after_delivery(
                port, expiry, default_lifetime_s, journal, intent.asked_in, intent.room_id, found
            )
        except MatrixActionError as exc:
            logger.warning("export %s not finished: %s", intent.event_id, exc.message)
            continue
        await store.finish_command(
            intent.event_id,
            sender=intent.requester,
            room_id=intent.asked_in,
            command_name=EXPORT_NAME,
            outcome="ok",
        )
        finished += 1
    return finished


def export_command(
    port: ExportPort,
    limits: ExportLimits | None = None,
    *,
    expiry: ExportExpiry | None = None,
    default_lifetime_s: int = 7 * 86400,
) -> Command[frozenset[str]]:
    """The ``!case export`` declaration.

    Args:
        port: the Matrix side (`bot.cases.export.nio_port.NioExportPort`).
        limits: what is too big to export.
        expiry: schedules the export's message for redaction on the DM's lifetime.
        default_lifetime_s: that lifetime when the DM's ``m.room.retention`` sets none
            (the federation's default message lifetime).
    """
    bounds = limits or ExportLimits()

    async def run(invocation: Invocation, formats: frozenset[str]) -> Reply:
        """Exactly once: the DM is recorded (the intent) before anything is sent, the
        message's transaction id is fixed by the command, and a run that finds an intent
        looks for that message before sending anything."""
        services, msg, case = invocation.services, invocation.message, invocation.case
        assert case is not None  # scope CASE_ROOM: the dispatcher checked
        journal = CaseJournal(services.store.database)
        request = await journal.begin_request(msg.event_id, msg.sender)
        txn_id = delivery_txn_id(msg.event_id)
        if request.room_id is not None:  # an interrupted run was about to send, or sent
            done = await port.find_delivery(request.room_id, txn_id, request.started_ms)
            if done is not None:
                logger.info("case %s: export already delivered, not sent again", case.room_id)
                await _delivered(journal, case.room_id, request.room_id, done)
                return Reply(SENT.format(who=msg.sender))
        events = await port.read_messages(case.room_id, bounds.max_messages + 1)
        refusal = too_big(events, bounds)
        if refusal is not None:
            return Reply(refusal)
        files: dict[str, Attachment] = {}
        for event in events:
            content = file_info(event.content)
            if content is None:
                continue
            name = content.get("filename") or content.get("body") or "piece-jointe"
            info = content.get("info")
            mimetype = info.get("mimetype") if isinstance(info, dict) else None
            try:
                data: bytes | None = await port.download(content)
            except MatrixActionError:
                data = None
            files[event.event_id] = Attachment(
                str(name), str(mimetype or "application/octet-stream"), data
            )
        # Sizes announced by senders may lie: the bytes actually read count too.
        refusal = attachments_too_big(sum(len(a.data or b"") for a in files.values()), bounds)
        if refusal is not None:
            return Reply(refusal)
        dm, opened = request.room_id, False
        recorded = None
        if dm is None:
            dm = recorded = await _recorded_direct_room(services, msg.sender, exclude=case.room_id)
        if dm is None:
            dm = port.direct_room(msg.sender, exclude={case.room_id})
        if dm is None:
            dm = await port.open_direct_room(msg.sender, services.settings.default_ttl_seconds)
            opened = True
        if dm != recorded:  # found in memory, opened, or resumed: the record follows it
            await services.store.record_direct_room(msg.sender, dm)
        # The intent, before anything is sent: a resumed run looks in, and sends to, this DM.
        await journal.set_request_room(msg.event_id, dm)
        people = await services.actions.joined_members(case.room_id)
        own = services.actions.user_id
        user_ids = sorted((set(people) | {UserId(e.sender) for e in events}) - {own})
        now = services.store.database.now_ms()
        export = CaseExport(
            label=case.label,
            room_id=case.room_id,
            exported_ms=now,
            requester=msg.sender,
            members=await _members(services.directory, port, case.room_id, user_ids),
            messages=resolve_messages(events, files),
        )
        archive = render_zip(export, formats)
        stamp = datetime.fromtimestamp(now / 1000, UTC).strftime("%Y%m%d-%H%M")
        filename = f"dossier-{case.label}-{stamp}.zip"
        caption = CAPTION.format(label=case.label, n=len(export.messages))
        delivery = await port.deliver(dm, filename, archive, caption, txn_id)
        del archive  # no copy kept
        await _delivered(journal, case.room_id, dm, delivery)
        logger.info("case %s exported (%d messages)", case.room_id, len(export.messages))
        return Reply((OPENED if opened else SENT).format(who=msg.sender, bot=own))

    async def _delivered(
        journal: CaseJournal, case_room: RoomId, dm: RoomId, delivery: Delivery
    ) -> None:
        await after_delivery(port, expiry, default_lifetime_s, journal, case_room, dm, delivery)

    return Command(
        path=("case", "export"),
        aliases=(("dossier", "exporter"),),
        usage="!case export [pdf|fhir]",
        help_fr=(
            "Envoie au demandeur seul, en message privé chiffré, une copie de ce que la salle "
            "contient encore : PDF et Bundle FHIR R4 dans un zip (ou l'un des deux). Créateur "
            "du dossier ou administrateur de la salle."
        ),
        help_en=(
            "Sends the requester alone, by encrypted direct message, a copy of what the room "
            "still holds: a PDF and a FHIR R4 Bundle in one zip (or either). The case's "
            "creator or a room admin."
        ),
        examples=("!case export", "!case export pdf"),
        permission=Permission.CASE_MANAGER,
        scope=Scope.CASE_ROOM,
        rerun_if_interrupted=True,  # a delivered export is recorded and not sent twice
        parse=parse_export,
        run=run,
    )


SENT = (
    "Export envoyé à {who} en message privé chiffré (rien n'est publié ici). / "
    "Export sent to {who} by encrypted direct message (nothing is posted here)."
)
OPENED = (
    "Export envoyé à {who} dans une nouvelle conversation privée chiffrée avec {bot} : "
    "acceptez l'invitation (rien n'est publié ici). / Export sent to {who} in a new encrypted "
    "direct conversation with {bot}: accept the invitation (nothing is posted here)."
)
CAPTION = (
    "Export du dossier « {label} » : {n} message(s). Versez-le au dossier patient ; ce message "
    "expire comme les autres. / Export of case “{label}”: {n} message(s). File it in the "
    "patient record; this message expires like the others."
)
