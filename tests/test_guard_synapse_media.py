"""No file in clear in the media store, tried against real Synapse.

A client that links a plain file from an encrypted message would leave it readable by
the server, its backups and every member server that fetches it. Each upload path is
tried as an ordinary user and as the server admin; Element's encrypted attachments and
a plain avatar picture must still go through, across servers too. A file in clear that
a member server without the guard would serve (planted in hs_b's media store as such a
server would have stored it) is not taken in by hs_a either.
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from deploy.local.federation import Homeserver
from tests.test_guard_media import PDF, REPORT, aes_ctr, picture
from tests.test_guard_synapse import Client, actor, http, user_on

pytestmark = pytest.mark.slow
__all__ = ["actor", "http"]

TEXT = REPORT * 4
AVATAR = picture("PNG", (96, 96))


def headers(client: Client, content_type: str = "application/octet-stream") -> dict[str, str]:
    return {"Authorization": f"Bearer {client.token}", "Content-Type": content_type}


async def upload(
    client: Client, data: bytes, version: str = "v3", content_type: str = "application/octet-stream"
) -> tuple[int, dict[str, str]]:
    url = f"{client.hs.client_url}/_matrix/media/{version}/upload?filename=cr.bin"
    async with client.http.post(url, data=data, headers=headers(client, content_type)) as response:
        return response.status, await response.json()


async def upload_later(client: Client, data: bytes) -> tuple[int, dict[str, str], str]:
    """`POST /create`, then the asynchronous `PUT /upload/{server}/{id}`."""
    base = f"{client.hs.client_url}/_matrix/media"
    async with client.http.post(f"{base}/v1/create", headers=headers(client)) as created:
        assert created.status == 200, await created.text()
        uri = str((await created.json())["content_uri"])
    server_and_id = uri.removeprefix("mxc://")
    async with client.http.put(
        f"{base}/v3/upload/{server_and_id}", data=data, headers=headers(client)
    ) as response:
        return response.status, await response.json(), uri


async def download(client: Client, uri: str, thumbnail: bool = False) -> tuple[int, bytes]:
    server_and_id = uri.removeprefix("mxc://")
    what = "thumbnail" if thumbnail else "download"
    size = "?width=32&height=32&method=scale&timeout_ms=0" if thumbnail else "?timeout_ms=0"
    url = f"{client.hs.client_url}/_matrix/client/v1/media/{what}/{server_and_id}{size}"
    auth = {"Authorization": f"Bearer {client.token}"}
    async with client.http.get(url, headers=auth) as response:
        return response.status, await response.read()


def stored_anywhere(hs: Homeserver, needle: bytes) -> bool:
    """Whether any file of the homeserver's media store holds `needle`."""
    store = hs.data_dir / "media_store"
    return any(needle in path.read_bytes() for path in store.rglob("*") if path.is_file())


def guard_refusals(hs: Homeserver, origin: str) -> int:
    """How many files from `origin` the guard has refused, by the homeserver's log."""
    log = (hs.data_dir / "homeserver.log").read_text(encoding="utf8", errors="replace")
    return log.count(f"Guard refused a file from {origin} ")


def refused_upload(status: int, body: dict[str, str]) -> None:
    # Synapse answers every media refusal by a module with this fixed 400 (it drops the
    # module's errcode and reason); the guard's log says why.
    assert status == 400, body
    assert body.get("error") == "Bad content", body


async def test_files_in_clear_are_refused_on_every_upload_path(actor: Client) -> None:
    marker = uuid.uuid4().hex.encode()
    before = guard_refusals(actor.hs, "this server")
    for data in (PDF + marker, TEXT + marker):
        for version in ("v3", "v1", "r0"):
            refused_upload(*await upload(actor, data, version))
        status, body, uri = await upload_later(actor, data)
        refused_upload(status, body)
        assert (await download(actor, uri))[0] != 200
    assert guard_refusals(actor.hs, "this server") >= before + 8  # the guard's, each time
    assert not stored_anywhere(actor.hs, marker)


async def test_encrypted_attachments_and_a_plain_avatar_go_through_between_servers(
    actor: Client, hs_b: Homeserver, http: aiohttp.ClientSession
) -> None:
    reader = await user_on(hs_b, http, "reader")
    encrypted = aes_ctr(PDF)
    status, body = await upload(actor, encrypted)
    assert status == 200, body
    status, _body, later = await upload_later(actor, aes_ctr(TEXT))
    assert status == 200, _body
    status, avatar_body = await upload(actor, AVATAR, content_type="image/png")
    assert status == 200, avatar_body
    avatar = avatar_body["content_uri"]
    # hs_b fetches each over federation and its guard checks it again
    assert await download(reader, body["content_uri"]) == (200, encrypted)
    assert (await download(reader, later))[0] == 200
    assert await download(reader, avatar) == (200, AVATAR)
    status, thumbnail = await download(reader, avatar, thumbnail=True)
    assert status == 200 and thumbnail[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0"), thumbnail[:8]
    profile = f"/profile/{actor.user_id}/avatar_url"
    assert (await actor.call("PUT", profile, {"avatar_url": avatar})).status == 200


def plant(hs: Homeserver, data: bytes) -> str:
    """Store `data` as hs's own upload the way a homeserver without the guard would have
    (the database row and the file), returning its mxc:// URI."""
    media_id = uuid.uuid4().hex[:24]
    path = hs.data_dir / "media_store" / "local_content" / media_id[:2] / media_id[2:4]
    path.mkdir(parents=True, exist_ok=True)
    Path(path / media_id[4:]).write_bytes(data)
    db = sqlite3.connect(hs.data_dir / "homeserver.db", timeout=30)
    try:
        with db:
            db.execute(
                "INSERT INTO local_media_repository (media_id, media_type, media_length,"
                " created_ts, upload_name, user_id, authenticated)"
                " VALUES (?, 'application/octet-stream', ?, ?, 'cr.bin', ?, 1)",
                (media_id, len(data), int(time.time() * 1000), hs.admin_user_id),
            )
    finally:
        db.close()
    return f"mxc://{hs.server_name}/{media_id}"


async def test_a_file_in_clear_from_a_server_without_the_guard_is_not_taken_in(
    hs_a: Homeserver, hs_b: Homeserver, http: aiohttp.ClientSession
) -> None:
    reader = await user_on(hs_a, http, "reader")
    owner = await user_on(hs_b, http, "owner")
    marker = uuid.uuid4().hex.encode()
    in_clear, control = plant(hs_b, TEXT + marker), plant(hs_b, os.urandom(2048))
    assert (await download(owner, in_clear))[0] == 200  # hs_b serves it: the guard is bypassed
    assert (await download(reader, control))[0] == 200  # the forging works
    before = guard_refusals(hs_a, hs_b.server_name)
    status, _ = await download(reader, in_clear)
    assert status == 404
    assert guard_refusals(hs_a, hs_b.server_name) == before + 1
    assert not stored_anywhere(hs_a, marker)
