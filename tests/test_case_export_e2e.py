"""``!case export`` through the production bot on two real homeservers: E2EE doctors write
text, a reply, an edit and an image; the creator gets the export as an encrypted attachment
in their DM with the bot, decrypts it, and finds the messages in the PDF and the FHIR Bundle.
A doctor on Element's own crypto (matrix-js-sdk, strict mode) receives and opens it too.
Neither homeserver ever holds the export in clear; a member who is not the creator is refused.
"""

from __future__ import annotations

import io
import json
import re
import uuid
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
import pytest
import pytest_asyncio
from nio import RoomGetEventResponse, RoomSendResponse, UploadResponse
from nio.crypto.attachments import decrypt_attachment
from PIL import Image
from pypdf import PdfReader

from bot.cases.export.render import FHIR_NAME, PDF_NAME
from bot.runner import BotRunner
from deploy.local.federation import Homeserver
from tests.conftest_bot import bot_config, start_bot
from tests.matrix_helpers import Doctor, open_case
from tests.test_element_client import MakeElement
from tests.test_element_client import element as element  # the fixture (explicit re-export)

pytestmark = pytest.mark.slow


@pytest_asyncio.fixture
async def bot(hs_a: Homeserver, hs_b: Homeserver, tmp_path: Path) -> AsyncIterator[BotRunner]:
    config = await bot_config(hs_a, tmp_path / "bot", [hs_a.server_name, hs_b.server_name])
    runner = await start_bot(config)
    yield runner
    await runner.stop()


async def _send(doctor: Doctor, room: str, content: dict[str, object]) -> str:
    await doctor.wait_sessions(room)
    response = await doctor.client.room_send(
        room, "m.room.message", content, ignore_unverified_devices=True
    )
    assert isinstance(response, RoomSendResponse), response
    return str(response.event_id)


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def _files_holding(roots: list[Path], needle: bytes) -> list[Path]:
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and needle in path.read_bytes():
                found.append(path)
    return found


async def test_the_creator_exports_a_case_as_an_encrypted_attachment(
    bot: BotRunner, hs_a: Homeserver, hs_b: Homeserver, tmp_path: Path
) -> None:
    alice = await Doctor.create(hs_a, tmp_path, name="alice")
    bob = await Doctor.create(hs_b, tmp_path, name="bob")
    mark = uuid.uuid4().hex[:10]
    try:
        case = await open_case(bot.user_id, alice, [bob], f"export-e2e {bob.user_id} ttl=1h")
        dm, room = case.dm, case.room
        first = await alice.send(room, f"genou droit {mark} premier avis")
        await _send(
            bob,
            room,
            {
                "msgtype": "m.text",
                "body": f"> <{alice.user_id}> genou droit\n\nréponse {mark} de Bob",
                "m.relates_to": {"m.in_reply_to": {"event_id": first}},
            },
        )
        await _send(
            alice,
            room,
            {
                "msgtype": "m.text",
                "body": f"* genou droit {mark} avis corrigé",
                "m.new_content": {"msgtype": "m.text", "body": f"genou droit {mark} avis corrigé"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": first},
            },
        )
        image = _png()
        uploaded, keys = await bob.client.upload(
            io.BytesIO(image), content_type="image/png", encrypt=True, filesize=len(image)
        )
        assert isinstance(uploaded, UploadResponse) and keys is not None
        await _send(
            bob,
            room,
            {
                "msgtype": "m.image",
                "body": "radio.png",
                "info": {"mimetype": "image/png", "size": len(image)},
                "file": {**keys, "url": uploaded.content_uri, "mimetype": "image/png"},
            },
        )

        seen = len(bob.seen)
        await bob.send(room, "!case export")  # not the creator, not an admin
        refused = await bob.wait_for_text(bot.user_id, lambda b: "!case" not in b, after=seen)
        assert "Only the practitioner who opened" in refused.body

        seen = len(alice.seen)
        await alice.send(room, "!case export")
        sent = await alice.wait_for_text(bot.user_id, lambda b: "Export sent" in b, after=seen)
        assert getattr(sent, "room_id", room) in (room, None)
        delivered = await alice.wait_for_text(
            bot.user_id, lambda b: b.endswith(".zip"), after=seen, timeout=60
        )
        file = delivered.source["content"]["file"]
        assert "url" not in delivered.source["content"]  # only the encrypted form
        assert delivered.source["type"] == "m.room.message"
        # Delivered in the requester's DM with the bot, never in the case room.
        assert isinstance(
            await alice.client.room_get_event(dm, delivered.event_id), RoomGetEventResponse
        )
        in_case = await alice.client.room_get_event(room, delivered.event_id)
        assert not isinstance(in_case, RoomGetEventResponse)
        downloaded = await alice.client.download(mxc=file["url"])
        ciphertext = downloaded.body
        archive = decrypt_attachment(
            ciphertext, file["key"]["k"], file["hashes"]["sha256"], file["iv"]
        )
        assert ciphertext != archive
        with zipfile.ZipFile(io.BytesIO(archive)) as zf:
            names = zf.namelist()
            pdf = zf.read(PDF_NAME)
            bundle = json.loads(zf.read(FHIR_NAME))
            images = [zf.read(n) for n in names if n.startswith("pieces-jointes/")]
        assert images == [image]

        text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
        assert "export-e2e" in text and alice.user_id in text and bob.user_id in text
        assert f"genou droit {mark} avis corrigé" in text  # the edit applied
        assert f"{mark} premier avis" not in text
        assert f"réponse {mark} de Bob" in text and "replying to #1" in text
        assert "> <" not in text  # the reply's quoted fallback is not repeated
        assert "radio.png" in text

        from fhir.resources.R4B.bundle import Bundle

        Bundle.model_validate(bundle)
        communications = [
            e["resource"]
            for e in bundle["entry"]
            if e["resource"]["resourceType"] == "Communication"
        ]
        bodies = [c["payload"][0]["contentString"] for c in communications]
        assert bodies[:2] == [f"genou droit {mark} avis corrigé", f"réponse {mark} de Bob"]
        assert communications[1]["inResponseTo"][0]["reference"] == next(
            e["fullUrl"] for e in bundle["entry"] if e["resource"] is communications[0]
        )
        binaries = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Binary"]
        assert len(binaries) == 1 and binaries[0]["resource"]["contentType"] == "image/png"

        # Neither homeserver holds the export in clear: not in its database, not in its
        # media store (the zip's file names and a slice of its bytes are looked for).
        roots = [hs_a.data_dir, hs_b.data_dir]
        for needle in (FHIR_NAME.encode(), archive[len(archive) // 2 : len(archive) // 2 + 48]):
            assert _files_holding(roots, needle) == []
        # The bot keeps no copy on disk either.
        assert _files_holding([tmp_path / "bot"], FHIR_NAME.encode()) == []
    finally:
        await alice.close()
        await bob.close()


async def test_an_element_doctor_receives_and_decrypts_the_export(
    bot: BotRunner, hs_a: Homeserver, element: MakeElement
) -> None:
    """The creator uses Element's crypto in its strict mode: the export's message decrypts
    with no shield, and the key it carries opens the attachment into the case's PDF."""
    doctor = await element(hs_a, "alice")
    mark = uuid.uuid4().hex[:10]
    dm = await doctor.create_dm(bot.user_id)
    await doctor.send(dm, "!case new export-element ttl=1d")
    reply = await doctor.wait_for_message(room_id=dm, sender=bot.user_id)
    match = re.search(r"matrix\.to/#/(![^?\s)]+)", reply["body"] or "")
    assert match, reply
    room = unquote(match.group(1))
    await doctor.join(room)
    await doctor.send(room, f"avis {mark} depuis Element")
    await doctor.send(room, "!case export")

    async def next_from_bot(room_id: str, wanted: Callable[[dict[str, Any]], bool]) -> Any:
        while True:
            message = await doctor.wait_for_message(room_id=room_id, sender=bot.user_id)
            if wanted(message):
                return message

    sent = await next_from_bot(room, lambda m: "Export sent" in (m["body"] or ""))
    assert sent["decrypted"]
    delivered = await next_from_bot(dm, lambda m: m["msgtype"] == "m.file")
    assert delivered["decrypted"] and delivered["shield_colour"] == "NONE", delivered
    file = delivered["file"]
    assert file is not None and file["url"].startswith("mxc://")
    server, media_id = file["url"].removeprefix("mxc://").split("/", 1)
    url = f"{hs_a.client_url}/_matrix/client/v1/media/download/{server}/{media_id}"
    headers = {"Authorization": f"Bearer {doctor.access_token}"}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        assert response.status == 200
        ciphertext = await response.read()
    archive = decrypt_attachment(ciphertext, file["key"]["k"], file["hashes"]["sha256"], file["iv"])
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        pdf = zf.read(PDF_NAME)
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
    assert f"avis {mark} depuis Element" in text and "export-element" in text
