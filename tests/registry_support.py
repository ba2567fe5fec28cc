"""Helpers for the registry tests: services on a real database, bridges served over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from signedjson.key import generate_signing_key

from bridge.admin.model import Actor
from bridge.config import BridgeConfig, parse_config
from bridge.db import Database
from bridge.http.app import create_app
from bridge.registry.keys import fingerprint_of
from bridge.registry.manifest import Contents, MemberEntry, build_manifest
from bridge.registry.model import MANIFEST_PATH, FederationName, ServerName
from bridge.registry.routes import REGISTRY
from bridge.registry.services import RegistryServices
from tests.conftest import free_port

ADMIN = Actor("@root:admin.test")
START = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


class Clock:
    """A settable clock: manifests expire, so tests move time instead of waiting."""

    def __init__(self, at: datetime = START) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


def services_on(
    db: Database,
    *,
    own: str = "own.test",
    name: str = "Fédération test",
    http: aiohttp.ClientSession | None = None,
    now: Callable[[], datetime] | None = None,
) -> RegistryServices:
    return RegistryServices(
        db=db,
        own_server=ServerName(own),
        federation=FederationName(name),
        signing_key=generate_signing_key("t1"),
        manifest_lifetime_seconds=3600,
        http=http,
        now=now or Clock(),
    )


def registry_config(tmp_path: Path, **overrides: Any) -> BridgeConfig:
    data: dict[str, Any] = {
        "server_name": "own.test",
        "homeserver_url": "http://127.0.0.1:9",
        "federation_name": "Fédération test",
        "data_dir": str(tmp_path / "bridge-data"),
        "peer_refresh_seconds": 1,
    }
    data.update(overrides)
    return parse_config(data, source="test", base_dir=tmp_path)


@asynccontextmanager
async def served_bridge(config: BridgeConfig) -> AsyncIterator[tuple[str, RegistryServices]]:
    """The whole bridge application on a loopback port: its URL and its registry services."""
    app = create_app(config, create_database=True)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", config.listen_port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{config.listen_port}", app[REGISTRY]
    finally:
        await runner.cleanup()


PEER_KEY = generate_signing_key("pk")
PEER_FP = fingerprint_of(PEER_KEY)
LIFETIME = 3600


def peer_manifest(
    issued_at: datetime, version: int = 1, servers: tuple[str, ...] = ("peer-hs.example",)
) -> dict[str, Any]:
    members = [MemberEntry("Clinique Pair", tuple(ServerName(s) for s in servers))]
    return build_manifest(
        "Pair",
        Contents.of(members, users=[f"@dr{n}:peer-hs.example" for n in range(3)]),
        version=version,
        issued_at=issued_at,
        lifetime_seconds=LIFETIME,
        signing_key=PEER_KEY,
    )


class Peer:
    """A peer bridge's manifest endpoint that can chunk, trickle, fail or serve old copies."""

    def __init__(self, document: object) -> None:
        self.document = document
        self.body: bytes | None = None
        """Raw bytes to serve instead of the document's JSON."""
        self.chunk = 0
        """Send the body in chunks of this many bytes (chunked encoding), 0: in one piece."""
        self.pause = 0.0
        """Seconds between chunks: a slow peer."""
        self.declared_length: int | None = None
        self.status = 200
        self.requests = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if self.status != 200:
            return web.json_response({"errcode": "M_UNKNOWN"}, status=self.status)
        body = self.body if self.body is not None else web.json_response(self.document).body
        assert isinstance(body, bytes)
        if not self.chunk:
            return web.Response(body=body, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if self.declared_length is not None:
            response.content_length = self.declared_length
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(body), self.chunk):
            await response.write(body[start : start + self.chunk])
            await asyncio.sleep(self.pause)  # the peer's pace, not synchronisation
        await response.write_eof()
        return response

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        app = web.Application()
        app.router.add_get(MANIFEST_PATH, self.handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            await runner.cleanup()
