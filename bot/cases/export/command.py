"""``!case export [pdf|fhir]``: the case's creator (or a room admin) gets a copy of what the
room still holds, as an encrypted attachment in their DM with the bot, never in the case room.

Exactly once: the delivery is recorded under the command's event id, so a redelivered or
interrupted command does not send a second copy after the first one went out. The bot keeps
no copy (the archive lives in memory during the command); the audit line says who exported
which case and when (the dispatcher writes it), never what.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from bot.bridge_client import DirectoryUnavailable
from bot.cases.export.model import Attachment, CaseExport, Member, RawEvent
from bot.cases.export.render import render_zip
from bot.cases.export.resolve import file_info, resolve_messages
from bot.cases.journal import CaseJournal
from bot.commands.context import CommandSettings, MatrixActionError
from bot.commands.parsing import ArgumentError
from bot.commands.registry import Command, DirectorySearch, Invocation, Permission, Reply, Scope
from bot.ids import RoomId

logger = logging.getLogger(__name__)

FORMATS = {"pdf": frozenset({"pdf"}), "fhir": frozenset({"fhir"})}
BOTH = frozenset({"pdf", "fhir"})


@dataclass(frozen=True)
class ExportLimits:
    max_messages: int = 2000
    max_attachment_bytes: int = 50 * 1024 * 1024


class ExportPort(Protocol):
    async def read_messages(self, room_id: RoomId, limit: int) -> list[RawEvent]: ...

    async def download(self, content: dict[str, Any]) -> bytes: ...

    def member_name(self, room_id: RoomId, user_id: str) -> str: ...

    def direct_room(self, user_id: str, exclude: set[str]) -> RoomId | None: ...

    async def deliver(self, room_id: RoomId, filename: str, data: bytes, caption: str) -> None: ...


def parse_export(args: Sequence[str], settings: CommandSettings) -> frozenset[str]:
    if not args:
        return BOTH
    if len(args) == 1 and args[0].lower() in FORMATS:
        return FORMATS[args[0].lower()]
    raise ArgumentError(
        "Formats : pdf ou fhir (les deux par défaut). / Formats: pdf or fhir (both by default)."
    )


async def _rpps(directory: DirectorySearch, user_id: str, name: str) -> str | None:
    """The register's RPPS of a member: searched by name, matched on the Matrix ID."""
    if name == user_id:
        return None
    try:
        page = await directory.search(name, limit=10)
    except DirectoryUnavailable:
        return None
    for found in page.results:
        if found.matrix_id == user_id:
            return found.rpps
    return None


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


def export_command(port: ExportPort, limits: ExportLimits | None = None) -> Command[frozenset[str]]:
    bounds = limits or ExportLimits()

    async def run(invocation: Invocation, formats: frozenset[str]) -> Reply:
        services, msg, case = invocation.services, invocation.message, invocation.case
        assert case is not None  # scope CASE_ROOM: the dispatcher checked
        journal = CaseJournal(services.store.database)
        request = await journal.begin_request(msg.event_id, msg.sender)
        if request.room_id is not None:  # an interrupted run already delivered it
            return Reply(SENT.format(who=msg.sender))
        dm = port.direct_room(msg.sender, exclude={case.room_id})
        if dm is None:
            return Reply(NO_DM.format(bot=services.actions.user_id))
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
        people = await services.actions.joined_members(case.room_id)
        senders = {e.sender for e in events}
        members = []
        for user_id in sorted(set(people) | senders):
            if user_id == services.actions.user_id:
                continue
            name = port.member_name(case.room_id, user_id)
            members.append(Member(user_id, name, await _rpps(services.directory, user_id, name)))
        now = services.store.database.now_ms()
        export = CaseExport(
            label=case.label,
            room_id=case.room_id,
            exported_ms=now,
            requester=msg.sender,
            members=members,
            messages=resolve_messages(events, files),
        )
        archive = render_zip(export, formats)
        stamp = datetime.fromtimestamp(now / 1000, UTC).strftime("%Y%m%d-%H%M")
        filename = f"dossier-{case.label}-{stamp}.zip"
        caption = CAPTION.format(label=case.label, n=len(export.messages))
        await port.deliver(dm, filename, archive, caption)
        del archive  # no copy kept
        await journal.set_request_room(msg.event_id, dm)
        await journal.mark_exported(case.room_id, at_ms=now)
        logger.info("case %s exported (%d messages)", case.room_id, len(export.messages))
        return Reply(SENT.format(who=msg.sender))

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
NO_DM = (
    "Je n'ai pas de message privé avec vous : ouvrez-en un avec {bot}, puis relancez "
    "!case export. / I have no direct message with you: open one with {bot}, then run "
    "!case export again."
)
CAPTION = (
    "Export du dossier « {label} » : {n} message(s). Versez-le au dossier patient ; ce message "
    "expire comme les autres. / Export of case “{label}”: {n} message(s). File it in the "
    "patient record; this message expires like the others."
)
