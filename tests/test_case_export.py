"""``!case export`` over the dispatcher with an in-memory Matrix and the real bridge: who may
export, what the archive holds (PDF text, FHIR validated), limits, a closed case, and a
delivery that happens once even when the bot stops around it. Plus the pure resolution of
edits and replies."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from bot.cases.export.command import ExportLimits, export_command
from bot.cases.export.model import RawEvent
from bot.cases.export.render import FHIR_NAME, PDF_NAME
from bot.cases.export.resolve import resolve_messages, strip_reply_fallback
from bot.cases.journal import CaseJournal
from bot.commands.dispatcher import CommandDispatcher
from bot.ids import RoomId
from bot.store import BotStore
from tests.test_bot_commands_dispatch import ALICE, BOB, MARTIN, SETTINGS, Bot, _open_case
from tests.test_bot_commands_dispatch import bot as bot  # the fixture (explicit re-export)
from tests.test_bot_commands_support import sqlite_url


class Killed(BaseException):
    pass


class FakePort:
    """The room's history and the DM, as the nio port gives them."""

    def __init__(self, dm: RoomId | None) -> None:
        self.events: list[RawEvent] = []
        self.files: dict[str, bytes] = {}
        self.dm = dm
        self.delivered: list[tuple[RoomId, str, bytes]] = []
        self.die_after_delivery = False

    async def read_messages(self, room_id: RoomId, limit: int) -> list[RawEvent]:
        return self.events[:limit]

    async def download(self, content: dict[str, Any]) -> bytes:
        return self.files[content["file"]["url"]]

    def member_name(self, room_id: RoomId, user_id: str) -> str:
        return {BOB: "MARTIN MARIE"}.get(user_id, user_id)

    def direct_room(self, user_id: str, exclude: set[str]) -> RoomId | None:
        return self.dm

    async def deliver(self, room_id: RoomId, filename: str, data: bytes, caption: str) -> None:
        self.delivered.append((room_id, filename, data))
        if self.die_after_delivery:
            self.die_after_delivery = False
            raise Killed


def _history(port: FakePort) -> None:
    image = b"\x89PNG-not-really"
    port.files["mxc://hs/img"] = image
    port.events = [
        RawEvent("$1", ALICE, 1000, {"msgtype": "m.text", "body": "avis initial"}),
        RawEvent(
            "$2",
            BOB,
            2000,
            {
                "msgtype": "m.text",
                "body": "> <@alice:hs-a.test> avis\n\nd'accord",
                "m.relates_to": {"m.in_reply_to": {"event_id": "$1"}},
            },
        ),
        RawEvent(
            "$3",
            ALICE,
            3000,
            {
                "msgtype": "m.text",
                "body": "* avis corrigé",
                "m.new_content": {"msgtype": "m.text", "body": "avis corrigé"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": "$1"},
            },
        ),
        RawEvent(
            "$4",
            BOB,
            4000,
            {
                "msgtype": "m.image",
                "body": "radio.png",
                "info": {"mimetype": "image/png", "size": len(image)},
                "file": {"url": "mxc://hs/img"},
            },
        ),
        RawEvent("$5", BOB, 5000, None),
    ]


def _with_export(bot: Bot, port: FakePort, limits: ExportLimits | None = None) -> None:
    bot.dispatcher.registry.add(export_command(port, limits))


async def test_export_holds_every_message_resolved_in_pdf_and_fhir(bot: Bot) -> None:
    room_id = await _open_case(bot)
    port = FakePort(bot.dm)
    _history(port)
    _with_export(bot, port)
    (refused,) = await bot.say("!case export", sender=BOB, room=room_id)
    assert "Only the practitioner who opened" in refused and port.delivered == []

    (sent,) = await bot.say("!case export", room=room_id)
    assert "Export sent to @alice:hs-a.test" in sent
    ((dm, filename, data),) = port.delivered
    assert dm == bot.dm and filename.startswith("dossier-genou-72-") and filename.endswith(".zip")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(zf.read(PDF_NAME))).pages)
        bundle = json.loads(zf.read(FHIR_NAME))
        assert [n for n in zf.namelist() if n.startswith("pieces-jointes/")] != []
    assert "avis corrigé" in text and "avis initial" not in text and "edited" in text
    assert "d'accord" in text and "replying to #1" in text
    assert f"RPPS {MARTIN}" in text  # found in the register by name, matched on the Matrix ID
    assert "could not read" in text  # the undecryptable message is marked, not dropped
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds.count("Communication") == 4 and kinds.count("Binary") == 1
    rpps = [
        i["value"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Practitioner"
        for i in e["resource"]["identifier"]
        if i["system"] == "urn:oid:1.2.250.1.71.4.2.1"
    ]
    assert rpps == [MARTIN]
    assert await CaseJournal(bot.store.engine).exported_ms(room_id) is not None
    (entry, *_) = await bot.store.audit_entries()
    assert (entry.command, entry.sender, entry.room_id) == ("case export", ALICE, room_id)
    # Now that it was exported, closing does not ask again.
    await bot.say("!case close", room=room_id)
    case = await bot.store.get_case(room_id)
    assert case is not None and not case.is_open


async def test_one_format_can_be_chosen_and_others_are_refused(bot: Bot) -> None:
    room_id = await _open_case(bot)
    port = FakePort(bot.dm)
    _history(port)
    _with_export(bot, port)
    await bot.say("!case export pdf", room=room_id)
    with zipfile.ZipFile(io.BytesIO(port.delivered[-1][2])) as zf:
        assert PDF_NAME in zf.namelist() and FHIR_NAME not in zf.namelist()
    await bot.say("!case export fhir", room=room_id)
    with zipfile.ZipFile(io.BytesIO(port.delivered[-1][2])) as zf:
        assert PDF_NAME not in zf.namelist() and FHIR_NAME in zf.namelist()
    (usage,) = await bot.say("!case export docx", room=room_id)
    assert "pdf or fhir" in usage and len(port.delivered) == 2


async def test_too_big_a_case_is_refused_with_the_limit_named(bot: Bot) -> None:
    room_id = await _open_case(bot)
    port = FakePort(bot.dm)
    _history(port)
    _with_export(bot, port, ExportLimits(max_messages=3))
    (refused,) = await bot.say("!case export", room=room_id)
    assert "more than 3 messages" in refused and port.delivered == []


async def test_attachments_over_the_limit_are_refused(bot: Bot) -> None:
    room_id = await _open_case(bot)
    port = FakePort(bot.dm)
    _history(port)
    port.events[3].content["info"]["size"] = 60 * 1024 * 1024  # type: ignore[index]
    _with_export(bot, port)
    (refused,) = await bot.say("!case export", room=room_id)
    assert "attachments exceed 50 MB" in refused and port.delivered == []


async def test_an_attachment_bigger_than_announced_is_counted_as_read(bot: Bot) -> None:
    room_id = await _open_case(bot)
    port = FakePort(bot.dm)
    _history(port)
    port.events[3].content["info"]["size"] = 1  # type: ignore[index]
    _with_export(bot, port, ExportLimits(max_attachment_bytes=10))
    (refused,) = await bot.say("!case export", room=room_id)
    assert "attachments exceed" in refused and port.delivered == []


async def test_without_a_dm_nothing_is_posted_in_the_case_room(bot: Bot) -> None:
    room_id = await _open_case(bot)
    port = FakePort(None)
    _history(port)
    _with_export(bot, port)
    (answer,) = await bot.say("!case export", room=room_id)
    assert "open one with @caducee:hs-a.test" in answer and port.delivered == []


async def test_a_closed_case_says_nothing_is_left(bot: Bot) -> None:
    room_id = await _open_case(bot)
    port = FakePort(bot.dm)
    _with_export(bot, port)
    await bot.say("!case close confirm", room=room_id)
    bot.matrix.join(room_id, bot.matrix.user_id)  # a late message the bot still reads
    (answer,) = await bot.say("!case export", room=room_id)
    assert "nothing is left" in answer and port.delivered == []


async def test_an_export_interrupted_after_delivery_is_not_sent_twice(
    bot: Bot, tmp_path: Path
) -> None:
    room_id = await _open_case(bot)
    port = FakePort(bot.dm)
    _history(port)
    port.die_after_delivery = True
    _with_export(bot, port)
    msg = bot.message("!case export", room=room_id)
    with pytest.raises(Killed):
        await bot.dispatcher.handle(msg)
    # The delivery went out and the bot died before recording it: the restarted bot cannot
    # tell, so it sends once more; once a delivery is recorded, never again.
    store = await BotStore.open(sqlite_url(tmp_path), create=True)
    try:
        restarted = CommandDispatcher(
            actions=bot.matrix, store=store, directory=bot.client, settings=SETTINGS
        )
        restarted.registry.add(export_command(port))
        await restarted.handle(msg)
        await restarted.handle(msg)
    finally:
        await store.close()
    assert len(port.delivered) == 2  # at most once more, and never after it was recorded
    replies = [n for n in bot.matrix.notices_in(room_id) if "Export sent" in n]
    assert len(replies) == 1


def test_edits_by_someone_else_are_ignored_and_fallbacks_stripped() -> None:
    events = [
        RawEvent("$1", ALICE, 1, {"msgtype": "m.text", "body": "original"}),
        RawEvent(
            "$2",
            BOB,
            2,
            {
                "msgtype": "m.text",
                "body": "* forged",
                "m.new_content": {"msgtype": "m.text", "body": "forged"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": "$1"},
            },
        ),
    ]
    (only,) = resolve_messages(events)
    assert only.text == "original" and not only.edited
    assert strip_reply_fallback("> <@a:x> hi\n> more\n\nanswer") == "answer"
    assert strip_reply_fallback("plain") == "plain"
