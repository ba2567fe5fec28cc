"""The export's files: a PDF a person can file, a FHIR R4 Bundle a records system can
import, both in one zip with the attachments. Pure (bytes in, bytes out); in memory only."""

from __future__ import annotations

import base64
import io
import json
import re
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from bot.cases.export.model import UNREADABLE_FR_EN, CaseExport, Message

RPPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
"""The French national identifier of health professionals (RPPS), as the directory uses it."""
MATRIX_ID_SYSTEM = "urn:ietf:rfc:3986"
_FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))
PDF_NAME, FHIR_NAME = "dossier.pdf", "dossier-fhir.json"


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _shown(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# -- PDF ---------------------------------------------------------------------------------------


class _Pdf(FPDF):
    def __init__(self) -> None:
        super().__init__(format="A4")
        self.unicode = False
        for folder in _FONT_DIRS:
            regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
            if regular.is_file() and bold.is_file():
                self.add_font("Body", "", str(regular))
                self.add_font("Body", "B", str(bold))
                self.unicode = True
                break

    def font(self, size: int, bold: bool = False) -> None:
        self.set_font("Body" if self.unicode else "Helvetica", "B" if bold else "", size)

    def text_of(self, text: str) -> str:
        # Without a Unicode font, the core fonts take Latin-1: French accents survive.
        return text if self.unicode else text.encode("latin-1", "replace").decode("latin-1")

    def para(self, text: str, size: int = 10, bold: bool = False) -> None:
        self.font(size, bold)
        self.multi_cell(0, size * 0.55, self.text_of(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _who(export: CaseExport, user_id: str) -> str:
    member = export.member(user_id)
    rpps = f"RPPS {member.rpps}" if member.rpps else "RPPS inconnu / unknown"
    return f"{member.name} ({rpps}, {user_id})"


def message_line(export: CaseExport, message: Message, index: dict[str, int]) -> str:
    """How one message reads in the PDF (also what the tests look for)."""
    head = f"#{index[message.event_id]} · {_shown(message.ts_ms)} · {_who(export, message.sender)}"
    notes = []
    if message.reply_to is not None:
        target = index.get(message.reply_to)
        notes.append(
            f"en réponse au #{target} / replying to #{target}"
            if target
            else "en réponse à un message effacé / replying to an erased message"
        )
    if message.edited:
        notes.append("modifié / edited")
    if message.attachment is not None:
        a = message.attachment
        state = f"{len(a.data)} octets / bytes" if a.data is not None else "illisible / unreadable"
        notes.append(f"pièce jointe / attachment: {a.name} ({a.mimetype}, {state})")
    text = message.text if message.text is not None else UNREADABLE_FR_EN
    extra = f" [{'; '.join(notes)}]" if notes else ""
    return f"{head}{extra}\n{text}"


def render_pdf(export: CaseExport) -> bytes:
    pdf = _Pdf()
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_title(f"Dossier {export.label}")
    pdf.add_page()
    pdf.para(f"Dossier « {export.label} » / Case “{export.label}”", 14, bold=True)
    pdf.para(f"Exporté le / Exported on: {_shown(export.exported_ms)}, par / by {export.requester}")
    pdf.para("Membres / Members:", bold=True)
    for member in export.members:
        pdf.para(f"- {_who(export, member.user_id)}")
    pdf.ln(3)
    index = {m.event_id: i for i, m in enumerate(export.messages, start=1)}
    if not export.messages:
        pdf.para("Aucun message lisible. / No readable message.")
    for message in export.messages:
        pdf.para(message_line(export, message, index))
        att = message.attachment
        if att is not None and att.data is not None and att.mimetype.startswith("image/"):
            try:
                pdf.image(io.BytesIO(att.data), w=80)
            except Exception:  # an image the PDF library cannot draw is still in the zip
                pdf.para("(image non affichable / image not displayable)")
        pdf.ln(2)
    return bytes(pdf.output())


# -- FHIR --------------------------------------------------------------------------------------


def _urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def render_fhir(export: CaseExport) -> dict[str, Any]:
    """A FHIR R4 ``collection`` Bundle: Practitioners (by RPPS), Communications, Binaries.
    Validated with fhir.resources before it is returned."""
    from fhir.resources.R4B.bundle import Bundle

    entries: list[dict[str, Any]] = []
    practitioners: dict[str, str] = {}
    for member in export.members:
        url = _urn()
        practitioners[member.user_id] = url
        identifier = (
            {"system": RPPS_SYSTEM, "value": member.rpps}
            if member.rpps
            else {"system": MATRIX_ID_SYSTEM, "value": f"matrix:u/{member.user_id.lstrip('@')}"}
        )
        entries.append(
            {
                "fullUrl": url,
                "resource": {
                    "resourceType": "Practitioner",
                    "identifier": [identifier],
                    "name": [{"text": member.name}],
                },
            }
        )
    communications = {m.event_id: _urn() for m in export.messages}
    for message in export.messages:
        payload: list[dict[str, Any]] = [
            {"contentString": message.text if message.text is not None else UNREADABLE_FR_EN}
        ]
        att = message.attachment
        if att is not None and att.data is not None:
            binary = _urn()
            entries.append(
                {
                    "fullUrl": binary,
                    "resource": {
                        "resourceType": "Binary",
                        "contentType": att.mimetype,
                        "data": base64.b64encode(att.data).decode("ascii"),
                    },
                }
            )
            payload.append({"contentReference": {"reference": binary, "display": att.name}})
        resource: dict[str, Any] = {
            "resourceType": "Communication",
            "identifier": [{"system": MATRIX_ID_SYSTEM, "value": f"matrix:e/{message.event_id}"}],
            "status": "completed",
            "sent": iso(message.ts_ms),
            "payload": payload,
        }
        if message.sender not in practitioners:
            practitioners[message.sender] = _urn()
            entries.append(
                {
                    "fullUrl": practitioners[message.sender],
                    "resource": {
                        "resourceType": "Practitioner",
                        "identifier": [
                            {"system": MATRIX_ID_SYSTEM, "value": f"matrix:u/{message.sender[1:]}"}
                        ],
                    },
                }
            )
        resource["sender"] = {"reference": practitioners[message.sender]}
        if message.reply_to in communications:
            resource["inResponseTo"] = [{"reference": communications[message.reply_to]}]
        notes = []
        if message.edited:
            notes.append({"text": "modifié / edited"})
        if message.text is None:
            notes.append({"text": "illisible / unreadable"})
        if notes:
            resource["note"] = notes
        entries.append({"fullUrl": communications[message.event_id], "resource": resource})
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": iso(export.exported_ms),
        "entry": entries,
    }
    Bundle.model_validate(bundle)  # raises if a record system would refuse it
    return bundle


# -- the archive -------------------------------------------------------------------------------


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80] or "piece-jointe"


def render_zip(export: CaseExport, formats: frozenset[str]) -> bytes:
    """One zip with the chosen formats (``pdf``, ``fhir``) and the decrypted attachments."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        if "pdf" in formats:
            archive.writestr(PDF_NAME, render_pdf(export))
        if "fhir" in formats:
            archive.writestr(FHIR_NAME, json.dumps(render_fhir(export), ensure_ascii=False))
        for i, message in enumerate(export.messages, start=1):
            att = message.attachment
            if att is not None and att.data is not None:
                archive.writestr(f"pieces-jointes/{i:04d}-{_safe(att.name)}", att.data)
    return out.getvalue()
