"""``!case export`` over the dispatcher with an in-memory Matrix and the real bridge: who may
export, what the archive holds (PDF text, FHIR validated), limits, a closed case, and a
delivery that happens once even when the bot stops around it. Plus the pure resolution of
edits and replies."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from bot.cases.export.command import (
    Delivery,
    ExportLimits,
    export_command,
    finish_interrupted_exports,
)
from bot.cases.export.model import RawEvent
from bot.cases.export.render import FHIR_NAME, PDF_NAME
from bot.cases.export.resolve import resolve_messages, strip_reply_fallback
from bot.cases.journal import CaseJournal
from bot.commands.dispatcher import CommandDispatcher
from bot.ids import EventId, RoomId, UserId
from bot.store import BotDatabase, BotStore
from tests.bot_commands_support import FakeRoom, sqlite_url
from tests.test_bot_commands_dispatch import (
    ALICE,
    BOB,
    CAROL,
    MARTIN,
    SETTINGS,
    Bot,
    _open_case,
)
from tests.test_bot_commands_dispatch import bot as bot  # the fixture (explicit re-export)


class Killed(BaseException):
    pass


class FakePort:
    """The room's history and the DM, as the nio port gives them; deliveries keep one
    message per transaction id, as the homeserver does."""

    def __init__(self, dm: RoomId | None) -> None:
        self.events: list[RawEvent] = []
        self.files: dict[str, bytes] = {}
        self.dm = dm
        self.names: dict[str, str] = {BOB: "MARTIN MARIE"}
        self.lifetimes: dict[RoomId, int] = {}
        self.delivered: list[tuple[RoomId, str, bytes]] = []
        self.by_txn: dict[tuple[RoomId, str], Delivery] = {}
        self.opened: list[tuple[UserId, int]] = []
        self.die: str | None = None  # "before-delivery", "after-delivery"

    async def read_messages(self, room_id: RoomId, limit: int) -> list[RawEvent]:
        return self.events[:limit]

    async def download(self, content: dict[str, Any]) -> bytes:
        return self.files[content["file"]["url"]]

    def member_name(self, room_id: RoomId, user_id: str) -> str:
        return self.names.get(user_id, user_id)

    def direct_room(self, user_id: str, exclude: set[str]) -> RoomId | None:
        return self.dm

    async def open_direct_room(self, user_id: UserId, lifetime_s: int) -> RoomId:
        self.opened.append((user_id, lifetime_s))
        self.dm = RoomId(f"!dm{len(self.opened)}:hs-a.test")
        return self.dm

    async def lifetime_ms(self, room_id: RoomId) -> int | None:
        return self.lifetimes.get(room_id)

    async def find_delivery(self, room_id: RoomId, txn_id: str, since_ms: int) -> Delivery | None:
        return self.by_txn.get((room_id, txn_id))

    async def deliver(
        self, room_id: RoomId, filename: str, data: bytes, caption: str, txn_id: str
    ) -> Delivery:
        if self.die == "before-delivery":
            self.die = None
            raise Killed
        found = self.by_txn.get((room_id, txn_id))
        if found is None:
            self.delivered.append((room_id, filename, data))
            found = Delivery(EventId(f"$export{len(self.delivered)}"), 1_000, ("mxc://hs/zip",))
            self.by_txn[room_id, txn_id] = found
        if self.die == "after-delivery":
            self.die = None
            raise Killed
        return found


class FakeExpiry:
    def __init__(self) -> None:
        self.scheduled: list[tuple[RoomId, EventId, int, int, tuple[str, ...]]] = []

    async def expire_own_event(
        self,
        room_id: RoomId,
        event_id: EventId,
        origin_server_ts: int,
        lifetime_ms: int,
        media: Sequence[str] = (),
    ) -> None:
        self.scheduled.append((room_id, event_id, origin_server_ts, lifetime_ms, tuple(media)))


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


def _with_export(
    bot: Bot, port: FakePort, limits: ExportLimits | None = None, expiry: FakeExpiry | None = None
) -> None:
    bot.dispatcher.registry.add(
        export_command(port, limits, expiry=expiry, default_lifetime_s=SETTINGS.default_ttl_seconds)
    )


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
    assert f"RPPS {MARTIN}" in text  # the register's link to Bob's Matrix ID
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
    assert await CaseJournal(bot.store.database).exported_ms(room_id) is not None
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


async def test_without_a_dm_the_bot_opens_one_and_the_case_room_only_hears_where(
    bot: Bot,
) -> None:
    room_id = await _open_case(bot)
    port = FakePort(None)
    _history(port)
    _with_export(bot, port)
    (answer,) = await bot.say("!case export", room=room_id)
    assert port.opened == [(ALICE, SETTINGS.default_ttl_seconds)]  # the DM's lifetime
    ((dm, filename, _),) = port.delivered
    assert dm == port.dm and dm != room_id
    assert "new encrypted direct conversation" in answer
    assert "avis" not in answer and filename not in answer  # nothing of the content


@pytest.mark.parametrize("intruder", ["joined", "invited", "left"])
async def test_the_recorded_dm_is_used_until_it_holds_anyone_but_the_requester_and_the_bot(
    bot: Bot, intruder: str
) -> None:
    """The DM comes from the requester's record, not from the rooms held in memory (after a
    restart an idle DM has no members loaded there, and a second DM was opened). A recorded
    DM where someone else has joined or is invited, or that the requester left, never gets
    the export: the record is forgotten and a new DM is opened."""
    room_id = await _open_case(bot)
    dm = bot.matrix.add_room([ALICE])
    await bot.store.record_direct_room(ALICE, dm)  # as the bot records it on joining
    port = FakePort(None)  # no DM among the rooms in memory
    _history(port)
    _with_export(bot, port)
    await bot.say("!case export", room=room_id)
    assert port.opened == []
    assert [d for d, _, _ in port.delivered] == [dm]

    if intruder == "joined":
        bot.matrix.join(dm, BOB)
    elif intruder == "invited":
        bot.matrix.rooms[dm].invited.add(UserId(BOB))
    else:
        bot.matrix.rooms[dm].joined.discard(UserId(ALICE))
    await bot.say("!case export", room=room_id)
    assert port.opened == [(ALICE, SETTINGS.default_ttl_seconds)]
    assert [d for d, _, _ in port.delivered] == [dm, port.dm]
    assert port.dm != dm
    assert await bot.store.direct_room(ALICE) == port.dm  # the new one, from now on


async def test_a_dm_opened_for_an_export_and_not_yet_accepted_gets_the_next_one_too(
    bot: Bot,
) -> None:
    room_id = await _open_case(bot)
    port = FakePort(None)
    _history(port)
    _with_export(bot, port)
    await bot.say("!case export", room=room_id)
    (opened,) = [d for d, _, _ in port.delivered]
    bot.matrix.rooms[opened] = FakeRoom(opened, {}, joined={bot.matrix.user_id}, invited={ALICE})
    port.dm = None  # not among the rooms in memory either
    await bot.say("!case export", room=room_id)
    assert len(port.opened) == 1  # she is invited there, and nobody else: no second DM
    assert [d for d, _, _ in port.delivered] == [opened, opened]


async def test_a_closed_case_says_nothing_is_left(bot: Bot) -> None:
    room_id = await _open_case(bot)
    port = FakePort(bot.dm)
    _with_export(bot, port)
    await bot.say("!case close confirm", room=room_id)
    bot.matrix.join(room_id, bot.matrix.user_id)  # a late message the bot still reads
    (answer,) = await bot.say("!case export", room=room_id)
    assert "nothing is left" in answer and port.delivered == []


@pytest.mark.parametrize("moment", ["before-delivery", "after-delivery"])
async def test_an_export_interrupted_around_its_delivery_is_delivered_once(
    bot: Bot, tmp_path: Path, moment: str
) -> None:
    room_id = await _open_case(bot)
    port = FakePort(bot.dm)
    _history(port)
    port.die = moment
    expiry = FakeExpiry()
    _with_export(bot, port, expiry=expiry)
    msg = bot.message("!case export", room=room_id)
    with pytest.raises(Killed):
        await bot.dispatcher.handle(msg)
    assert expiry.scheduled == []  # died before anything after the delivery
    store = BotStore(await BotDatabase.open(sqlite_url(tmp_path), create=True))
    try:
        restarted = CommandDispatcher(
            actions=bot.matrix, store=store, directory=bot.client, settings=SETTINGS
        )
        restarted.registry.add(export_command(port, expiry=expiry))
        await restarted.handle(msg)
        await restarted.handle(msg)
    finally:
        await store.database.close()
    assert len(port.delivered) == 1  # one copy, whatever the moment the bot stopped
    replies = [n for n in bot.matrix.notices_in(room_id) if "Export sent" in n]
    assert len(replies) == 1
    assert await CaseJournal(bot.store.database).exported_ms(room_id) is not None
    ((dm, event_id, _, lifetime, media),) = set(expiry.scheduled)
    assert (dm, event_id, media) == (bot.dm, "$export1", ("mxc://hs/zip",))
    assert lifetime == 7 * 86400 * 1000  # the DM sets none: the federation's default


async def test_the_export_expires_on_the_dms_own_lifetime(bot: Bot) -> None:
    room_id = await _open_case(bot)
    port = FakePort(bot.dm)
    _history(port)
    port.lifetimes[bot.dm] = 3_600_000
    expiry = FakeExpiry()
    _with_export(bot, port, expiry=expiry)
    await bot.say("!case export", room=room_id)
    assert [s[3] for s in expiry.scheduled] == [3_600_000]


async def test_a_spoofed_display_name_never_gets_a_colleagues_rpps(bot: Bot) -> None:
    """Carol calls herself by Bob's register name, and Bob goes by a nickname: the export
    names each by the link their onboarding made, never by what they call themselves."""
    room_id = await _open_case(bot, f"!case new genou-72 @bob:hs-b.test {CAROL}")
    bot.matrix.join(room_id, CAROL)
    port = FakePort(bot.dm)
    _history(port)
    port.events.append(RawEvent("$6", CAROL, 6000, {"msgtype": "m.text", "body": "avis Carol"}))
    port.names = {CAROL: "MARTIN MARIE", BOB: "Bobby"}
    _with_export(bot, port)
    await bot.say("!case export", room=room_id)
    ((_, _, data),) = port.delivered
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(zf.read(PDF_NAME))).pages)
        bundle = json.loads(zf.read(FHIR_NAME))
    practitioners = {
        e["resource"]["name"][0]["text"]: e["resource"]["identifier"][0]["value"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Practitioner"
    }
    assert practitioners["Dr Marie MARTIN"] == MARTIN  # Bob, by his link, not "Bobby"
    carol = next(n for n in practitioners if n.startswith("MARTIN MARIE"))
    assert "unverified" in carol and practitioners[carol] != MARTIN
    assert list(practitioners.values()).count(MARTIN) == 1
    assert f"RPPS {MARTIN}, {BOB}" in text and f"RPPS {MARTIN}, {CAROL}" not in text


async def test_an_export_whose_command_never_comes_back_is_finished_at_start(
    bot: Bot, tmp_path: Path
) -> None:
    """Sent, then killed; the restarted bot's first sync does not show the command again
    (it was too far back): at start the bot finds the message, schedules its expiry and marks
    the case exported; a late redelivery then changes nothing."""
    room_id = await _open_case(bot)
    port = FakePort(bot.dm)
    _history(port)
    port.die = "after-delivery"
    expiry = FakeExpiry()
    _with_export(bot, port, expiry=expiry)
    msg = bot.message("!case export", room=room_id)
    with pytest.raises(Killed):
        await bot.dispatcher.handle(msg)
    store = BotStore(await BotDatabase.open(sqlite_url(tmp_path), create=True))
    try:
        finished = await finish_interrupted_exports(
            port, store, expiry=expiry, default_lifetime_s=3600
        )
        assert finished == 1
        assert await finish_interrupted_exports(port, store, expiry=expiry) == 0
        restarted = CommandDispatcher(
            actions=bot.matrix, store=store, directory=bot.client, settings=SETTINGS
        )
        restarted.registry.add(export_command(port, expiry=expiry))
        await restarted.handle(msg)  # redelivered after all: already done
    finally:
        await store.database.close()
    assert len(port.delivered) == 1
    assert [n for n in bot.matrix.notices_in(room_id) if "Export sent" in n] == []
    assert await CaseJournal(bot.store.database).exported_ms(room_id) is not None
    assert [(s[0], s[1], s[3]) for s in expiry.scheduled] == [(bot.dm, "$export1", 3_600_000)]
    audit = [(e.command, e.outcome) for e in await bot.store.audit_entries()]
    assert ("case export", "ok") in audit


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
