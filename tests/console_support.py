"""Helpers for the console tests: a bridge configured for hs_a, running on a loopback port,
with an admin account on hs_a; signing in through the real form."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from bridge.config import BridgeConfig
from deploy.local.federation import Homeserver
from tests.bridge_http_support import bridge_config, running_bridge

ADMIN_PASSWORD = "admin passphrase for the console"
CSRF_FIELD = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@dataclass(frozen=True)
class ConsoleAdmin:
    user_id: str
    password: str


async def new_admin(hs: Homeserver) -> ConsoleAdmin:
    localpart = f"fedadmin-{uuid.uuid4().hex[:8]}"
    user = await hs.register_user(localpart, ADMIN_PASSWORD)
    return ConsoleAdmin(user.user_id, ADMIN_PASSWORD)


def console_config(
    tmp_path: Path, hs: Homeserver, admins: list[str], **admin_overrides: Any
) -> BridgeConfig:
    token_file = tmp_path / "synapse-admin.token"
    token_file.write_text(hs.admin_token)
    token_file.chmod(0o600)
    admin: dict[str, Any] = {
        "users": admins,
        "homeserver_admin_token_file": str(token_file),
        **admin_overrides,
    }
    return bridge_config(
        tmp_path, server_name=hs.server_name, homeserver_url=hs.client_url, admin=admin
    )


@asynccontextmanager
async def running_console(
    config: BridgeConfig,
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with running_bridge(config) as client:
        yield client


def csrf_of(html: str) -> str:
    found = CSRF_FIELD.search(html)
    assert found is not None, "no CSRF field in the page"
    return found.group(1)


async def sign_in(
    client: TestClient[web.Request, web.Application], user_id: str, password: str
) -> int:
    form = await client.get("/admin/login")
    csrf = csrf_of(await form.text())
    response = await client.post(
        "/admin/login",
        data={"csrf": csrf, "user_id": user_id, "password": password},
        allow_redirects=False,
    )
    return response.status
