"""Helpers for the expiry tests against real homeservers (no tests here).

- `Raw`: a practitioner's bare client/server API session (aiohttp), sending real Megolm
  ciphertext nobody holds the key to: the guard only lets real-looking
  ``m.room.encrypted`` through, and the engine never decrypts anything it expires.
- `Witness`: a syncing client that records every redaction it is served, i.e. what a
  member's client blanks.
- `ExpiryBot`: the engine wired to a minimal nio client that syncs like the shell does
  (`feed_sync` before the token moves on), startable, stoppable and restartable on one
  database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from nio import AsyncClient, AsyncClientConfig, SyncResponse

from bot.commands.rooms import build_case_room_body
from bot.expiry.admin import SynapseExpiryAdmin
from bot.expiry.engine import ExpiryEngine, ExpirySettings
from bot.expiry.nio_matrix import NioExpiryMatrix, feed_sync
from bot.expiry.policy import RETENTION_EVENT, retention_content
from bot.expiry.store import ExpiryStore
from bot.ids import RoomId, UserId
from bot.store import BotDatabase, BotStore, CaseRoom
from deploy.local.federation import Homeserver, RegisteredUser
from tests.matrix_helpers import eventually, unique
from tests.megolm_support import megolm_content

MEGOLM = "m.megolm.v1.aes-sha2"
TEST_PURGE_MARGIN_MS = 3_000


def fake_megolm() -> dict[str, Any]:
    """Real Megolm ciphertext that nobody holds the key to (the guard refuses fakes)."""
    return megolm_content()


@dataclass
class Raw:
    """One account's client-server API session."""

    hs: Homeserver
    user: RegisteredUser
    http: aiohttp.ClientSession

    @classmethod
    async def register(cls, hs: Homeserver, http: aiohttp.ClientSession, name: str) -> Raw:
        user = await hs.register_user(unique(name), secrets.token_urlsafe(12))
        return cls(hs, user, http)

    @property
    def user_id(self) -> str:
        return self.user.user_id

    async def call(self, method: str, path: str, body: Any = None, **params: str) -> Any:
        headers = {"Authorization": f"Bearer {self.user.access_token}"}
        async with self.http.request(
            method, self.hs.client_url + path, json=body, headers=headers, params=params or None
        ) as response:
            data = await response.json(content_type=None)
            if response.status >= 400:
                raise AssertionError(f"{method} {path}: {response.status} {data}")
            return data

    async def join(self, room_id: str, via: str) -> None:
        await self.call("POST", f"/_matrix/client/v3/join/{quote(room_id)}", {}, server_name=via)

    async def send(self, room_id: str) -> tuple[str, int]:
        """An encrypted-looking message; returns (event id, origin_server_ts)."""
        path = f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.encrypted/"
        sent = await self.call("PUT", path + secrets.token_hex(8), fake_megolm())
        event_id = str(sent["event_id"])
        event = await self.call(
            "GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/event/{quote(event_id)}"
        )
        return event_id, int(event["origin_server_ts"])

    async def post(self, room_id: str) -> str:
        """Like `send`, in one request (benchmarks): returns the event id only."""
        path = f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.encrypted/"
        sent = await self.call("PUT", path + secrets.token_hex(8), fake_megolm())
        return str(sent["event_id"])

    async def upload(self, data: bytes) -> str:
        headers = {
            "Authorization": f"Bearer {self.user.access_token}",
            "Content-Type": "application/octet-stream",
        }
        url = self.hs.client_url + "/_matrix/media/v3/upload?filename=blob.bin"
        async with self.http.post(url, data=data, headers=headers) as response:
            assert response.status == 200, await response.text()
            return str((await response.json())["content_uri"])


@dataclass
class Witness:
    """Syncs as a member and records the redactions it receives: redacted id → redaction ts;
    and the encrypted messages: event id → origin ts (what the homeserver may purge later)."""

    member: Raw
    redactions: dict[str, int] = field(default_factory=dict)
    messages: dict[str, int] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        first = await self.member.call("GET", "/_matrix/client/v3/sync", timeout="0")
        self._task = asyncio.create_task(self._loop(str(first["next_batch"])))

    async def _loop(self, since: str) -> None:
        room_filter = json.dumps({"room": {"timeline": {"limit": 500}}})
        while True:
            data = await self.member.call(
                "GET", "/_matrix/client/v3/sync", since=since, timeout="1000", filter=room_filter
            )
            since = str(data["next_batch"])
            rooms = data.get("rooms", {})
            sections = [*rooms.get("join", {}).values(), *rooms.get("leave", {}).values()]
            for joined in sections:  # a kick after a redaction may come in the same sync
                for event in joined.get("timeline", {}).get("events", []):
                    if event.get("type") == "m.room.redaction":
                        redacts = event.get("redacts") or event.get("content", {}).get("redacts")
                        self.redactions.setdefault(str(redacts), int(event["origin_server_ts"]))
                    elif event.get("type") == "m.room.encrypted":
                        self.messages[str(event["event_id"])] = int(event["origin_server_ts"])

    async def wait_redacted(self, event_ids: list[str], timeout: float = 30.0) -> dict[str, int]:
        async def all_seen() -> dict[str, int] | None:
            if all(e in self.redactions for e in event_ids):
                return {e: self.redactions[e] for e in event_ids}
            return None

        try:
            return await eventually(all_seen, timeout=timeout)
        except AssertionError:
            missing = [e for e in event_ids if e not in self.redactions]
            raise AssertionError(
                f"{self.member.user_id} saw no redaction of {len(missing)} of "
                f"{len(event_ids)} events: {missing}"
            ) from None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


def rows_in_db(hs: Homeserver, table: str, event_ids: list[str]) -> int:
    """How many of these events the homeserver's database still holds (read-only)."""
    path = hs.data_dir / "homeserver.db"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        marks = ",".join("?" * len(event_ids))
        query = f"SELECT COUNT(*) FROM {table} WHERE event_id IN ({marks})"  # noqa: S608
        return int(db.execute(query, event_ids).fetchone()[0])
    finally:
        db.close()


async def create_case_room(
    bot: Raw,
    ttl_seconds: int,
    members: list[Raw],
    store: BotStore,
    *,
    purge_margin_ms: int = TEST_PURGE_MARGIN_MS,
) -> RoomId:
    """A case room as ``!case new`` makes it (same body), members joined, case recorded.

    The homeservers purge ``purge_margin_ms`` after the lifetime (tests keep it short)."""
    body = build_case_room_body(
        label=unique("test"),
        requester=UserId(members[0].user_id),
        bot=UserId(bot.user_id),
        ttl_seconds=ttl_seconds,
        invite=[UserId(m.user_id) for m in members],
    )
    for state in body["initial_state"]:
        if state["type"] == RETENTION_EVENT:  # purge soon after redaction, to keep tests short
            state["content"] = retention_content(ttl_seconds * 1000, purge_margin_ms)
    created = await bot.call("POST", "/_matrix/client/v3/createRoom", body)
    room_id = RoomId(str(created["room_id"]))
    created_ms = store.database.now_ms()
    await store.add_case(CaseRoom(room_id, "test", UserId(bot.user_id), ttl_seconds, created_ms))
    for member in members:
        await member.join(room_id, bot.hs.server_name)
    return room_id


class ExpiryBot:
    """The engine with a minimal syncing client, restartable on the same database."""

    def __init__(
        self,
        hs: Homeserver,
        account: RegisteredUser,
        db_url: str,
        *,
        settings: ExpirySettings | None = None,
        timeline_limit: int = 100,
    ) -> None:
        self.hs = hs
        self.account = account
        self.db_url = db_url
        self.settings = settings or ExpirySettings(idle_poll_s=1.0)
        self.timeline_limit = timeline_limit
        self.token: str | None = None
        self.engine: ExpiryEngine | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closers: list[Any] = []
        self.client: AsyncClient | None = None

    async def start(self, *, since: str | None = None) -> ExpiryEngine:
        client = AsyncClient(
            self.hs.client_url,
            self.account.user_id,
            config=AsyncClientConfig(encryption_enabled=False),
        )
        client.restore_login(
            self.account.user_id, self.account.device_id, self.account.access_token
        )
        self.client = client
        database = await BotDatabase.open(self.db_url, create=True)
        schedule, cases = ExpiryStore(database), BotStore(database)
        admin = SynapseExpiryAdmin(self.hs.client_url, self.hs.admin_token)
        self._closers = [client.close, database.close, admin.close]
        engine = ExpiryEngine(
            schedule=schedule,
            cases=cases,
            matrix=NioExpiryMatrix(client),
            server_name=self.hs.server_name,
            admin=admin,
            settings=self.settings,
        )
        self.engine = engine
        await engine.start()  # before the first sync, as the shell must
        self.token = since if since is not None else self.token
        self._tasks = [
            asyncio.create_task(engine.run()),
            asyncio.create_task(self._sync_loop()),
        ]
        return engine

    async def _sync_loop(self) -> None:
        assert self.client is not None and self.engine is not None
        sync_filter = {"room": {"timeline": {"limit": self.timeline_limit}}}
        while True:
            response = await self.client.sync(
                timeout=1000, since=self.token, sync_filter=sync_filter
            )
            if isinstance(response, SyncResponse):
                await feed_sync(self.engine, response)
                self.token = response.next_batch  # acknowledged only after persisting

    async def pause_sync(self) -> None:
        """Stop syncing only (the engine keeps running), keeping the token."""
        sync = self._tasks.pop()
        sync.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sync

    def resume_sync(self) -> None:
        self._tasks.append(asyncio.create_task(self._sync_loop()))

    async def stop(self) -> None:
        """Stop abruptly (tasks cancelled mid-flight, nothing flushed), like a crash."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        try:
            if tasks:
                stopped, running = await asyncio.wait(tasks, timeout=30)
                for task in stopped:  # a crash is what this simulates: errors are expected
                    if not task.cancelled():
                        task.exception()
                if running:  # a loop that swallows its cancellation would run forever
                    raise AssertionError(f"{len(running)} expiry task(s) ignored cancellation")
        finally:
            for close in self._closers:
                with contextlib.suppress(Exception):
                    await close()
            self._closers = []

    def check_alive(self) -> None:
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise AssertionError(f"expiry task died: {task.exception()!r}")


def sqlite_db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'bot.db'}"
