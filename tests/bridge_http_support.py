"""Helpers for the bridge's HTTP tests: configs, a running app, a minimal OpenID issuer.

The OpenID issuer answers `/_matrix/federation/v1/openid/userinfo` from a table, so the fast
tests can cover the bridge's reactions (unknown token, foreign user, missing `openid` resource,
caching) without Synapse; the claims against real homeservers are in test_bridge_openid.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridge.config import BridgeConfig, parse_config
from bridge.http.app import RouteInstaller, create_app

SERVICE_TOKEN = "bot-" + "s" * 40
OTHER_SERVICE_TOKEN = "cron-" + "c" * 40


def bridge_config(tmp_path: Path, **overrides: Any) -> BridgeConfig:
    data: dict[str, Any] = {
        "server_name": "clinic.test",
        "homeserver_url": "http://127.0.0.1:9",
        "data_dir": str(tmp_path / "bridge-data"),
        "service_tokens": [
            {"name": "bot", "token": SERVICE_TOKEN},
            {"name": "cron", "token": OTHER_SERVICE_TOKEN},
        ],
    }
    data.update(overrides)
    return parse_config(data, source="test", base_dir=tmp_path)


async def init_database(config: BridgeConfig) -> None:
    """What `caducee bridge init` does: `serve` (the service) never creates its database."""
    from bridge.db import open_database

    if config.database_url is None:
        config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    database = await open_database(config.effective_database_url, create=True)
    await database.close()


@asynccontextmanager
async def running_bridge(
    config: BridgeConfig, extra_routes: tuple[RouteInstaller, ...] = ()
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    client = TestClient(
        TestServer(create_app(config, extra_routes=extra_routes, create_database=True))
    )
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


@dataclass
class OpenIdIssuer:
    """A homeserver reduced to its OpenID userinfo endpoint, counting the checks it answers."""

    tokens: dict[str, str] = field(default_factory=dict)
    serve_openid: bool = True
    calls: int = 0

    def app(self) -> web.Application:
        async def userinfo(request: web.Request) -> web.Response:
            self.calls += 1
            if not self.serve_openid:
                return web.json_response({"errcode": "M_UNRECOGNIZED"}, status=404)
            user_id = self.tokens.get(request.query.get("access_token", ""))
            if user_id is None:
                return web.json_response({"errcode": "M_UNKNOWN_TOKEN"}, status=401)
            return web.json_response({"sub": user_id})

        app = web.Application()
        app.router.add_get("/_matrix/federation/v1/openid/userinfo", userinfo)
        return app


@asynccontextmanager
async def running_issuer(issuer: OpenIdIssuer) -> AsyncIterator[str]:
    server = TestServer(issuer.app())
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()
