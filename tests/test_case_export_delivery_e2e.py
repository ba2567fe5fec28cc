"""``!case export``'s delivery through the production bot on real homeservers: exactly once
when the bot is killed right after sending it (the restarted bot finds the message, whether
the command comes back or only its journal remains); into a new DM when the requester has none;
redacted on the DM's lifetime by the expiry engine like any expiring message."""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import zipfile
from pathlib import Path
from typing import Any

import pytest
from nio import RedactedEvent, RoomEncryptedFile, RoomGetEventResponse, RoomMessagesResponse
from nio.crypto.attachments import decrypt_attachment

from bot.cases.export.nio_port import NioExportPort
from bot.cases.export.render import PDF_NAME
from bot.cases.journal import CaseJournal
from bot.config import BotConfig
from bot.expiry.admin import write_admin_token
from bot.ids import RoomId
from bot.store import BotDatabase, BotStore
from deploy.local.federation import Homeserver
from tests.conftest_bot import bot_config, start_bot
from tests.matrix_helpers import Doctor, eventually, join, open_case

pytestmark = pytest.mark.slow

DM_LIFETIME_S = 30


@pytest.fixture
async def config(hs_a: Homeserver, hs_b: Homeserver, tmp_path: Path) -> BotConfig:
    """The production bot's configuration; new DMs (and DMs without a policy) keep
    messages DM_LIFETIME_S."""
    token_file = tmp_path / "admin-token"
    write_admin_token(token_file, hs_a.admin_token)
    return await bot_config(
        hs_a,
        tmp_path / "bot",
        [hs_a.server_name, hs_b.server_name],
        min_ttl="2s",
        default_ttl=f"{DM_LIFETIME_S}s",
        max_ttl="1d",
        admin_token_file=str(token_file),
    )


async def _zips_in(doctor: Doctor, room_id: str, sender: str) -> list[Any]:
    """The export files `sender` posted in `room_id`, read back from the homeserver."""
    response = await doctor.client.room_messages(room_id, limit=100)
    assert isinstance(response, RoomMessagesResponse), response
    return [
        e
        for e in response.chunk
        if isinstance(e, RoomEncryptedFile) and e.sender == sender and e.body.endswith(".zip")
    ]


def _unzip(ciphertext: bytes, file: dict[str, Any]) -> list[str]:
    archive = decrypt_attachment(ciphertext, file["key"]["k"], file["hashes"]["sha256"], file["iv"])
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        return zf.namelist()


async def test_an_export_killed_right_after_its_delivery_is_not_sent_again(
    config: BotConfig,
    hs_a: Homeserver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = await start_bot(config)
    alice = await Doctor.create(hs_a, tmp_path, name="alice")
    try:
        case = await open_case(bot.user_id, alice, [], "export-reprise ttl=1h")
        await alice.send(case.room, "premier avis")
        delivered = asyncio.Event()
        original = NioExportPort.deliver

        async def deliver_then_die(self: NioExportPort, *args: Any, **kwargs: Any) -> Any:
            await original(self, *args, **kwargs)
            delivered.set()
            await asyncio.Event().wait()  # killed here: the journal never hears of it

        monkeypatch.setattr(NioExportPort, "deliver", deliver_then_die)
        mark = len(alice.seen)
        await alice.send(case.room, "!case export")
        await asyncio.wait_for(delivered.wait(), 90)
        await bot.stop()
        monkeypatch.setattr(NioExportPort, "deliver", original)
        caplog.set_level(logging.INFO, logger="bot")
        bot = await start_bot(config)
        # Either the command comes back with the next sync, or the start-up check finds
        # the unrecorded export: both look for the message before sending anything.
        store = BotStore(await BotDatabase.open(config.effective_database_url, create=True))
        try:
            journal = CaseJournal(store.database)
            await eventually(lambda: journal.exported_ms(RoomId(case.room)), timeout=90)
        finally:
            await store.database.close()

        (zip_event,) = await _zips_in(alice, case.dm, bot.user_id)  # one copy, not two
        captions = [
            e
            for e in alice.seen[mark:]
            if e.sender == bot.user_id and "File it in the patient record" in e.body
        ]
        assert len(captions) == 1
        replies = [e for e in alice.seen[mark:] if "Export sent" in getattr(e, "body", "")]
        assert len(replies) <= 1

        # Found by its transaction id, not sent again and merely deduplicated. The line is
        # logged just after the journal's mark, which the test may see first.
        async def found_not_resent() -> bool | None:
            text = caplog.text
            seen = (
                "export already delivered, not sent again" in text
                or "finished 1 interrupted case export(s)" in text
            )
            return True if seen else None

        await eventually(found_not_resent, timeout=30)
        downloaded = await alice.client.download(mxc=zip_event.source["content"]["file"]["url"])
        assert PDF_NAME in _unzip(downloaded.body, zip_event.source["content"]["file"])
    finally:
        await alice.close()
        await bot.stop()


async def test_without_a_dm_the_export_opens_one_and_expires_on_its_lifetime(
    config: BotConfig, hs_a: Homeserver, tmp_path: Path
) -> None:
    bot = await start_bot(config)
    alice = await Doctor.create(hs_a, tmp_path, name="alice")
    try:
        case = await open_case(bot.user_id, alice, [], "export-sans-dm ttl=1h")
        await alice.send(case.room, "avis à garder")
        await alice.client.room_leave(case.dm)  # no DM with the bot any more
        assert bot.client is not None
        client = bot.client

        async def bot_saw_her_leave() -> bool | None:
            room = client.rooms.get(case.dm)
            return True if room is None or alice.user_id not in room.users else None

        await eventually(bot_saw_her_leave)
        before = set(alice.client.invited_rooms)
        mark = len(alice.seen)
        await alice.send(case.room, "!case export")
        told = await alice.wait_for_text(
            bot.user_id, lambda b: "Export sent" in b, after=mark, timeout=90
        )
        in_case = await alice.client.room_get_event(case.room, told.event_id)
        assert isinstance(in_case, RoomGetEventResponse)  # said in the case room
        assert "new encrypted direct conversation" in told.body
        assert "avis" not in told.body and ".zip" not in told.body  # nothing of the content

        async def invited() -> str | None:
            new = set(alice.client.invited_rooms) - before
            return next(iter(new), None)

        dm = await eventually(invited, timeout=30)
        await eventually(functools.partial(join, alice, dm))
        file_event = await alice.wait_for_text(
            bot.user_id, lambda b: b.endswith(".zip"), after=mark, timeout=60
        )
        (zip_event,) = await _zips_in(alice, dm, bot.user_id)
        assert zip_event.event_id == file_event.event_id
        file = zip_event.source["content"]["file"]
        downloaded = await alice.client.download(mxc=file["url"])
        assert PDF_NAME in _unzip(downloaded.body, file)
        retention = await alice.client.room_get_state_event(dm, "m.room.retention")
        assert retention.content["max_lifetime"] >= DM_LIFETIME_S * 1000  # purged there too
        encryption = await alice.client.room_get_state_event(dm, "m.room.encryption")
        assert encryption.content["algorithm"] == "m.megolm.v1.aes-sha2"

        async def redacted() -> bool | None:
            answer = await alice.client.room_get_event(dm, zip_event.event_id)
            assert isinstance(answer, RoomGetEventResponse), answer
            return True if isinstance(answer.event, RedactedEvent) else None

        await eventually(redacted, timeout=DM_LIFETIME_S + 60)
        sent = zip_event.server_timestamp
        answer = await alice.client.room_get_event(dm, zip_event.event_id)
        redaction_ts = answer.event.source["unsigned"]["redacted_because"]["origin_server_ts"]
        assert redaction_ts >= sent + DM_LIFETIME_S * 1000 - 1000  # not early
    finally:
        await alice.close()
        await bot.stop()


async def test_after_a_restart_the_export_goes_to_the_dm_she_already_has(
    config: BotConfig, hs_a: Homeserver, tmp_path: Path
) -> None:
    """The bot restarts (sync token kept): her DM, idle since, has no members loaded in the
    bot's memory. The export still goes there, found by the record the bot made on joining
    the DM she opened, and no second DM is opened."""
    bot = await start_bot(config)
    alice = await Doctor.create(hs_a, tmp_path, name="alice")
    try:
        case = await open_case(bot.user_id, alice, [], "export-apres-redemarrage ttl=1h")
        await alice.send(case.room, "avis à garder")
        await bot.stop()
        bot = await start_bot(config)
        mark = len(alice.seen)
        await alice.send(case.room, "!case export")
        told = await alice.wait_for_text(
            bot.user_id, lambda b: "Export sent" in b, after=mark, timeout=90
        )
        assert "new encrypted" not in told.body  # said only when a DM had to be opened
        (zip_event,) = await _zips_in(alice, case.dm, bot.user_id)
        file = zip_event.source["content"]["file"]
        downloaded = await alice.client.download(mxc=file["url"])
        assert PDF_NAME in _unzip(downloaded.body, file)
    finally:
        await alice.close()
        await bot.stop()
