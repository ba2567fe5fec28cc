"""Matrix users reach the bridge with OpenID tokens from REAL homeservers.

The bridge serves hs_a's federation, whose users and hs_b's may query; hs_c is outside. Tokens
come from Synapse's `openid/request_token`; the bridge checks hs_a's on its client listener
(which serves the `openid` resource) and hs_b's over federation TLS with the federation's CA.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bridge.config import BridgeConfig
from bridge.http.directory_routes import SEARCH_PATH
from deploy.local.federation import Homeserver
from tests.bridge_http_support import bridge_config, running_bridge

pytestmark = pytest.mark.slow


async def openid_token(homeserver: Homeserver) -> str:
    user = await homeserver.register_user(f"doc-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{homeserver.client_url}/_matrix/client/v3/user/{user.user_id}/openid/request_token",
            headers={"Authorization": f"Bearer {user.access_token}"},
            json={},
        ) as response,
    ):
        assert response.status == 200, await response.text()
        body = await response.json()
    assert body["matrix_server_name"] == homeserver.server_name
    return str(body["access_token"])


def federation_a_bridge(tmp_path: Path, hs_a: Homeserver, hs_b: Homeserver) -> BridgeConfig:
    return bridge_config(
        tmp_path,
        server_name=hs_a.server_name,
        homeserver_url=hs_a.client_url,
        openid_allowed_servers=[hs_a.server_name, hs_b.server_name],
        federation_ca_file=str(hs_a.ca.cert),
    )


async def search_as(
    client: TestClient[web.Request, web.Application], token: str, server: str | None = None
) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    if server is not None:
        headers["X-Caducee-Matrix-Server"] = server
    response = await client.get(SEARCH_PATH, params={"q": "martin"}, headers=headers)
    return int(response.status)


async def test_own_homeserver_user_with_openid_token_may_search(
    tmp_path: Path, hs_a: Homeserver, hs_b: Homeserver
) -> None:
    token = await openid_token(hs_a)
    async with running_bridge(federation_a_bridge(tmp_path, hs_a, hs_b)) as client:
        assert await search_as(client, token) == 200


async def test_allowed_peer_user_is_checked_over_federation_tls(
    tmp_path: Path, hs_a: Homeserver, hs_b: Homeserver
) -> None:
    token = await openid_token(hs_b)
    async with running_bridge(federation_a_bridge(tmp_path, hs_a, hs_b)) as client:
        assert await search_as(client, token, hs_b.server_name) == 200
        # Without naming its server the token is checked with hs_a, which does not know it.
        assert await search_as(client, token) == 401


async def test_user_of_a_server_outside_the_federation_is_403(
    tmp_path: Path, hs_a: Homeserver, hs_b: Homeserver, hs_c: Homeserver
) -> None:
    token = await openid_token(hs_c)
    async with running_bridge(federation_a_bridge(tmp_path, hs_a, hs_b)) as client:
        assert await search_as(client, token, hs_c.server_name) == 403
        assert await search_as(client, token) == 401


async def test_garbage_and_client_access_tokens_are_401(
    tmp_path: Path, hs_a: Homeserver, hs_b: Homeserver
) -> None:
    user = await hs_a.register_user(f"doc-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex)
    async with running_bridge(federation_a_bridge(tmp_path, hs_a, hs_b)) as client:
        assert await search_as(client, "garbage-" + uuid.uuid4().hex) == 401
        # A client-server access token is not an OpenID token: it must not open the API.
        assert await search_as(client, user.access_token) == 401


async def test_peer_with_a_federation_whitelist_still_answers_openid_checks(
    tmp_path: Path, hs_a: Homeserver, hs_b: Homeserver
) -> None:
    """hs_a restricts federation to its members; its userinfo endpoint serves any bridge."""
    token = await openid_token(hs_a)
    config = bridge_config(
        tmp_path,
        server_name=hs_b.server_name,
        homeserver_url=hs_b.client_url,
        openid_allowed_servers=[hs_b.server_name, hs_a.server_name],
        federation_ca_file=str(hs_b.ca.cert),
    )
    async with running_bridge(config) as client:
        assert await search_as(client, token, hs_a.server_name) == 200
