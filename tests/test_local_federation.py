"""The local federation: hardened config accepted by Synapse, members talk E2EE over TLS."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from nio import (
    AsyncClient,
    AsyncClientConfig,
    InviteMemberEvent,
    MatrixRoom,
    RoomMessageText,
    RoomSendResponse,
)
from typer.testing import CliRunner

from deploy.cli import app
from deploy.local.federation import Homeserver, LocalFederation

pytestmark = pytest.mark.slow


def test_rendered_config_passes_synapse_validation(hs_a: Homeserver) -> None:
    """Synapse's own config loader (the one `homeserver` uses) accepts the rendered file."""
    script = (
        "import sys; from synapse.config.homeserver import HomeServerConfig;"
        "c = HomeServerConfig.load_config('check', ['-c', sys.argv[1]]);"
        "print(c.server.server_name, c.retention.retention_enabled,"
        " c.server.redaction_retention_period)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(hs_a.config_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    name, retention, redaction_period = result.stdout.split()
    assert name == hs_a.server_name
    assert retention == "True"
    assert int(redaction_period) == 5 * 60 * 1000


def test_config_and_keys_are_private(hs_a: Homeserver) -> None:
    for path in (hs_a.config_path, hs_a.data_dir / "signing.key", hs_a.data_dir / "tls.key"):
        assert path.stat().st_mode & 0o777 == 0o600, path


class Doctor:
    """A practitioner's E2EE client (matrix-nio with a real crypto store)."""

    def __init__(self, homeserver: Homeserver, store: Path, user_id: str, token: str, device: str):
        store.mkdir(parents=True, exist_ok=True)
        self.client = AsyncClient(
            homeserver.client_url,
            user_id,
            device_id=device,
            store_path=str(store),
            config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True),
        )
        self.client.restore_login(user_id, device, token)
        assert self.client.olm is not None, "E2EE must be active (crypto store loaded)"
        self.messages: asyncio.Queue[tuple[str, RoomMessageText]] = asyncio.Queue()
        self.invites: asyncio.Queue[str] = asyncio.Queue()
        self.client.add_event_callback(self._on_message, RoomMessageText)
        self.client.add_event_callback(self._on_invite, InviteMemberEvent)
        self._task: asyncio.Task[None] | None = None

    async def _on_message(self, room: MatrixRoom, event: RoomMessageText) -> None:
        if event.sender != self.client.user_id:
            await self.messages.put((room.room_id, event))

    async def _on_invite(self, room: MatrixRoom, event: InviteMemberEvent) -> None:
        if event.state_key == self.client.user_id and event.membership == "invite":
            await self.invites.put(room.room_id)

    async def start(self) -> None:
        await self.client.sync(timeout=0, full_state=True)
        self._task = asyncio.create_task(self.client.sync_forever(timeout=1000))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.client.close()


@pytest.fixture
async def doctors(
    hs_a: Homeserver, hs_b: Homeserver, tmp_path: Path
) -> AsyncIterator[tuple[Doctor, Doctor]]:
    suffix = uuid.uuid4().hex[:8]
    made = []
    for homeserver, name in ((hs_a, "alice"), (hs_b, "bruno")):
        user = await homeserver.register_user(f"{name}-{suffix}", "correct-horse-battery")
        made.append(
            Doctor(homeserver, tmp_path / name, user.user_id, user.access_token, user.device_id)
        )
    for doctor in made:
        await doctor.start()
    yield made[0], made[1]
    for doctor in made:
        await doctor.close()


async def _wait_for(queue: asyncio.Queue[object], timeout: float = 20.0) -> object:
    return await asyncio.wait_for(queue.get(), timeout)


async def _wait_synced_member(doctor: Doctor, room_id: str, user_id: str) -> None:
    async def joined() -> None:
        while True:
            room = doctor.client.rooms.get(room_id)
            if room is not None and user_id in room.users:
                return
            await doctor.client.synced.wait()
            doctor.client.synced.clear()

    await asyncio.wait_for(joined(), 20)


async def test_member_homeservers_exchange_encrypted_messages_both_ways(
    doctors: tuple[Doctor, Doctor], hs_b: Homeserver
) -> None:
    alice, bruno = doctors
    created = await alice.client.room_create(name="Cas 1", invite=[bruno.client.user_id])
    room_id = created.room_id  # type: ignore[union-attr]
    assert await _wait_for(bruno.invites) == room_id  # type: ignore[arg-type]
    await bruno.client.join(room_id)
    await _wait_synced_member(alice, room_id, bruno.client.user_id)
    assert alice.client.rooms[room_id].encrypted, "rooms are encrypted by default"

    sent = await alice.client.room_send(
        room_id,
        "m.room.message",
        {"msgtype": "m.text", "body": "bonjour confrère"},
        ignore_unverified_devices=True,
    )
    assert isinstance(sent, RoomSendResponse)
    got_room, event = await _wait_for(bruno.messages)  # type: ignore[misc]
    assert (got_room, event.body) == (room_id, "bonjour confrère")
    assert event.decrypted, "the message crossed federation encrypted"

    await _wait_synced_member(bruno, room_id, alice.client.user_id)
    await bruno.client.room_send(
        room_id,
        "m.room.message",
        {"msgtype": "m.text", "body": "bien reçu"},
        ignore_unverified_devices=True,
    )
    _, reply = await _wait_for(alice.messages)  # type: ignore[misc]
    assert reply.body == "bien reçu" and reply.decrypted

    # What hs_b stores and serves is ciphertext only.
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{hs_b.client_url}/_synapse/admin/v1/rooms/{room_id}/messages",
            params={"dir": "b", "limit": "20"},
            headers={"Authorization": f"Bearer {hs_b.admin_token}"},
        ) as response,
    ):
        assert response.status == 200
        chunk = (await response.json())["chunk"]
    timeline = [e["type"] for e in chunk if "state_key" not in e]
    assert timeline and set(timeline) == {"m.room.encrypted"}
    assert "bonjour" not in json.dumps(chunk)


def test_status_json_lists_homeservers_for_scripts(federation: LocalFederation) -> None:
    result = CliRunner().invoke(
        app, ["local", "status", "--json", "--state-dir", str(federation.base_dir)]
    )
    assert result.exit_code == 0, result.output
    state = json.loads(result.output)
    assert state["running"] is True
    names = {hs["server_name"] for hs in state["homeservers"]}
    assert names == {hs.server_name for hs in federation.homeservers.values()}
    for homeserver in state["homeservers"]:
        assert homeserver["client_url"].startswith("http://127.0.0.1:")
        assert homeserver["admin"]["user_id"].startswith("@admin:")
        assert isinstance(homeserver["demo_accounts"], list)


def test_status_json_says_not_running(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["local", "status", "--json", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert json.loads(result.output) == {"running": False, "homeservers": []}
