"""Helpers for the registry tests: services on a real database, bridges served over HTTP."""

from __future__ import annotations

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
from bridge.registry.model import FederationName, ServerName
from bridge.registry.routes import REGISTRY
from bridge.registry.services import RegistryServices

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
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", config.listen_port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{config.listen_port}", app[REGISTRY]
    finally:
        await runner.cleanup()
