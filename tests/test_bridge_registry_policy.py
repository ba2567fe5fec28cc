"""OpenID users of the federation's own homeservers, as the registry lists them, may use the API.

The bridge runs (aiohttp test server) on SQLite and PostgreSQL; homeservers are added and
removed through the registry's handlers, as `caducee admin` and the console do; the homeserver
that issues OpenID tokens is the small issuer of the HTTP tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridge.config import BridgeConfig
from bridge.http.app import create_app, registry_server_policy
from bridge.http.auth import SERVER_POLICY, RegistryServerPolicy, StaticServerPolicy
from bridge.http.directory_routes import SEARCH_PATH
from bridge.registry import handlers
from bridge.registry.routes import REGISTRY
from tests.bridge_http_support import OpenIdIssuer, bridge_config, running_issuer
from tests.registry_support import ADMIN

NEW = "new.clinic.test"
CACHE = 0.3


@asynccontextmanager
async def started(app: web.Application) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


def async_url(store_url: str) -> str:
    """The bridge wants an async driver; the shared fixture gives plain SQLite URLs."""
    return store_url.replace("sqlite://", "sqlite+aiosqlite://", 1)


def config_with_issuer(tmp_path: Path, store_url: str, issuer_url: str) -> BridgeConfig:
    return bridge_config(
        tmp_path,
        database_url=async_url(store_url),
        homeserver_url=issuer_url,
        openid_allowed_servers=["clinic.test", "static.test"],
        openid_server_urls={NEW: issuer_url, "static.test": issuer_url},
    )


async def search_as(
    client: TestClient[web.Request, web.Application], token: str, server: str
) -> int:
    headers = {"Authorization": f"Bearer {token}", "X-Caducee-Matrix-Server": server}
    response = await client.get(SEARCH_PATH, params={"q": "martin"}, headers=headers)
    return int(response.status)


async def test_the_running_bridge_lets_in_a_homeserver_registered_after_it_started(
    tmp_path: Path, store_url: str
) -> None:
    issuer = OpenIdIssuer(tokens={"doc": f"@doc:{NEW}", "static": "@ann:static.test"})
    async with running_issuer(issuer) as issuer_url:
        app = create_app(config_with_issuer(tmp_path, store_url, issuer_url), create_database=True)
        assert isinstance(app[SERVER_POLICY], RegistryServerPolicy)
        async with started(app) as client:
            services = app[REGISTRY]
            await handlers.add_member(services, ADMIN, "Clinique Neuve")
            await handlers.add_homeserver(services, ADMIN, NEW, "Clinique Neuve")
            assert await search_as(client, "doc", NEW) == 200
            assert await search_as(client, "static", "static.test") == 200
            assert await search_as(client, "doc", "other.test") == 403


async def test_removal_from_the_registry_stops_new_logins_within_the_cache_time(
    tmp_path: Path, store_url: str
) -> None:
    issuer = OpenIdIssuer(tokens={"doc": f"@doc:{NEW}", "static": "@ann:static.test"})
    async with running_issuer(issuer) as issuer_url:
        app = create_app(config_with_issuer(tmp_path, store_url, issuer_url), create_database=True)
        app[SERVER_POLICY] = registry_server_policy(app, cache_seconds=CACHE)
        async with started(app) as client:
            services = app[REGISTRY]
            assert await search_as(client, "doc", NEW) == 403
            calls = issuer.calls
            assert calls == 0  # refused before the bridge contacted the server

            await handlers.add_member(services, ADMIN, "Clinique Neuve")
            await handlers.add_homeserver(services, ADMIN, NEW, "Clinique Neuve")
            await asyncio.sleep(CACHE + 0.1)
            assert await search_as(client, "doc", NEW) == 200

            await handlers.remove_homeserver(services, ADMIN, NEW)
            await asyncio.sleep(CACHE + 0.1)
            # Also refused while the token itself is still remembered as checked.
            assert await search_as(client, "doc", NEW) == 403
            # The configured servers do not depend on the registry.
            assert await search_as(client, "static", "static.test") == 200

            await handlers.add_homeserver(services, ADMIN, NEW, "Clinique Neuve")
            await handlers.remove_member(services, ADMIN, "Clinique Neuve")
            await asyncio.sleep(CACHE + 0.1)
            assert await search_as(client, "doc", NEW) == 403


async def test_own_homeservers_are_ours_registered_and_the_bridges_not_only_configured(
    tmp_path: Path, store_url: str
) -> None:
    app = create_app(
        bridge_config(tmp_path, database_url=async_url(store_url)), create_database=True
    )
    async with started(app):
        services = app[REGISTRY]
        assert await handlers.own_homeservers(services) == {"clinic.test"}
        await handlers.add_member(services, ADMIN, "CHU Nord")
        await handlers.add_homeserver(services, ADMIN, "Matrix.CHU-Nord.fr", "CHU Nord")
        assert await handlers.own_homeservers(services) == {"clinic.test", "matrix.chu-nord.fr"}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Registry:
    """A registry read that counts its calls, can fail, and can be slow."""

    def __init__(self, *servers: str) -> None:
        self.servers = set(servers)
        self.reads = 0
        self.broken = False
        self.delay = 0.0

    async def __call__(self) -> Collection[str]:
        self.reads += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.broken:
            raise OSError("database unreachable")
        return set(self.servers)


async def test_the_registry_is_read_at_most_once_per_cache_time() -> None:
    registry, clock = Registry("a.test"), Clock()
    policy = RegistryServerPolicy({"static.test"}, registry, cache_seconds=10, clock=clock)
    assert await policy.is_allowed("static.test")
    assert registry.reads == 0  # configured servers need no read
    assert await policy.is_allowed("a.test")
    assert await policy.is_allowed("A.TEST")
    assert not await policy.is_allowed("b.test")
    assert registry.reads == 1
    registry.servers = {"b.test"}
    clock.now = 9.9
    assert await policy.is_allowed("a.test")
    clock.now = 10.0
    assert not await policy.is_allowed("a.test")
    assert await policy.is_allowed("b.test")
    assert registry.reads == 2


async def test_concurrent_requests_share_one_read() -> None:
    registry = Registry("a.test")
    registry.delay = 0.05
    policy = RegistryServerPolicy((), registry, cache_seconds=10)
    answers = await asyncio.gather(*(policy.is_allowed("a.test") for _ in range(20)))
    assert all(answers)
    assert registry.reads == 1


async def test_an_unreadable_registry_keeps_the_last_list_and_is_retried_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry, clock = Registry(), Clock()
    policy = RegistryServerPolicy({"static.test"}, registry, cache_seconds=10, clock=clock)
    registry.broken = True
    assert not await policy.is_allowed("a.test")  # nothing read yet: only the configured
    assert await policy.is_allowed("static.test")
    registry.broken, registry.servers = False, {"a.test"}
    clock.now = 10
    assert await policy.is_allowed("a.test")
    registry.broken, registry.servers = True, set()
    for now in (20, 30, 40):
        clock.now = now
        assert await policy.is_allowed("a.test")  # the last list read stays in force
    assert registry.reads == 5
    warnings = [r.getMessage() for r in caplog.records if "Cannot read" in r.getMessage()]
    assert len(warnings) == 2  # once per outage, not once per read
    registry.broken = False
    clock.now = 50
    assert not await policy.is_allowed("a.test")


async def test_the_static_policy_is_still_available() -> None:
    policy = StaticServerPolicy(frozenset({"a.test"}))
    assert await policy.is_allowed("a.test")
    assert not await policy.is_allowed("b.test")


async def test_a_stuck_registry_read_gives_up_and_keeps_the_last_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bridge.http import auth

    monkeypatch.setattr(auth, "REGISTRY_READ_TIMEOUT_SECONDS", 0.05)
    registry = Registry("a.test")
    registry.delay = 3600.0  # the database never answers
    policy = RegistryServerPolicy({"static.test"}, registry, cache_seconds=10)
    async with asyncio.timeout(5):  # the request is answered, not held
        assert not await policy.is_allowed("a.test")
    assert await policy.is_allowed("static.test")
