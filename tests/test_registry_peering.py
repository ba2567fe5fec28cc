"""Peering between bridges over HTTP: two whole bridge applications on loopback, and fake
peers serving tampered, replayed or re-keyed manifests. The same with real homeservers is in
test_registry_federation.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from signedjson.key import generate_signing_key

from bridge.admin.model import AdminError
from bridge.registry import handlers
from bridge.registry.keys import fingerprint_of
from bridge.registry.manifest import Contents, MemberEntry, build_manifest, verify_manifest
from bridge.registry.model import ALLOWED_SERVERS_PATH, MANIFEST_PATH, Peer, ServerName
from bridge.registry.services import RegistryServices
from tests.conftest import free_port
from tests.registry_support import ADMIN, registry_config, served_bridge

FAKE_KEY = generate_signing_key("f1")


async def until(probe: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await probe():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


def fake_manifest(version: int, servers: list[str], **changes: Any) -> dict[str, Any]:
    document = build_manifest(
        "Fake federation",
        Contents.of([MemberEntry("Fake", tuple(ServerName(s) for s in servers))]),
        version=version,
        issued_at=datetime.now(UTC),
        lifetime_seconds=3600,
        signing_key=FAKE_KEY,
    )
    document.update(changes)
    return document


class FakePeer:
    """A peer bridge reduced to its manifest endpoint; serves whatever the test sets."""

    def __init__(self) -> None:
        self.document: object = fake_manifest(1, ["fake-hs.example"])
        self.status = 200

    @asynccontextmanager
    async def running(self, port: int | None = None) -> AsyncIterator[str]:
        async def manifest(request: web.Request) -> web.Response:
            if self.status != 200:
                return web.json_response({"errcode": "M_UNKNOWN"}, status=self.status)
            return web.json_response(self.document)

        app = web.Application()
        app.router.add_get(MANIFEST_PATH, manifest)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = port or free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            await runner.cleanup()


async def peer_state(services: RegistryServices, url: str) -> Peer:
    found = [p for p in await handlers.list_peers(services) if p.url == url]
    assert found, f"{url} is not a peer"
    return found[0]


async def test_two_bridges_peer_and_follow_each_other_live(tmp_path: Path) -> None:
    config_a = registry_config(
        tmp_path / "a", server_name="hs-a.test", federation_name="A", listen_port=free_port()
    )
    config_b = registry_config(
        tmp_path / "b", server_name="hs-b.test", federation_name="B", listen_port=free_port()
    )
    async with (
        served_bridge(config_a) as (url_a, reg_a),
        served_bridge(config_b) as (url_b, reg_b),
        aiohttp.ClientSession() as http,
    ):
        await handlers.add_member(reg_b, ADMIN, "Clinique B")
        await handlers.add_homeserver(reg_b, ADMIN, "hs-b2.test", "Clinique B")

        async with http.get(url_b + MANIFEST_PATH) as response:  # public: no token
            assert response.status == 200
            published = await response.json()
        verdict = verify_manifest(published, reg_b.fingerprint, datetime.now(UTC), None)
        assert verdict.manifest is not None, verdict
        assert verdict.manifest.contents.homeservers == ("hs-b.test", "hs-b2.test")

        added = await handlers.add_peer(reg_a, ADMIN, url_b + "/", reg_b.fingerprint)
        assert added.checked, added
        assert added.peer.name == "B"

        async def allowed_on_a() -> list[str]:
            async with http.get(url_a + ALLOWED_SERVERS_PATH) as response:
                assert response.status == 200
                assert response.headers["Cache-Control"] == "no-cache"
                body = await response.json()
            servers: list[str] = body["servers"]
            return servers

        assert await allowed_on_a() == ["hs-a.test", "hs-b.test", "hs-b2.test"]

        # B onboards a homeserver: A's allow-list follows within the refresh interval.
        await handlers.add_homeserver(reg_b, ADMIN, "hs-b3.test", "Clinique B")
        await until(lambda: _contains(allowed_on_a(), "hs-b3.test"))
        # ... and removes one: it is cut off the same way.
        await handlers.remove_homeserver(reg_b, ADMIN, "hs-b2.test")
        await until(lambda: _lacks(allowed_on_a(), "hs-b2.test"))
        assert (await peer_state(reg_a, url_b)).version == 3

        # A stops trusting B: at once.
        await handlers.remove_peer(reg_a, ADMIN, "B")
        assert await allowed_on_a() == ["hs-a.test"]


async def _contains(servers: Awaitable[list[str]], name: str) -> bool:
    return name in await servers


async def _lacks(servers: Awaitable[list[str]], name: str) -> bool:
    return name not in await servers


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (lambda: fake_manifest(2, ["evil.example"]) | {"version": 3}, "bad_signature"),
        (lambda: build_manifest(
            "Fake federation", Contents.of([], ["evil.example"]), version=5,
            issued_at=datetime.now(UTC), lifetime_seconds=60, signing_key=generate_signing_key("x"),
        ), "wrong_key"),
        (lambda: {k: v for k, v in fake_manifest(5, ["evil.example"]).items() if k != "signatures"},
         "missing_signature"),
        (lambda: build_manifest(
            "Fake federation", Contents.of([], ["evil.example"]), version=5,
            issued_at=datetime(2020, 1, 1, tzinfo=UTC), lifetime_seconds=60, signing_key=FAKE_KEY,
        ), "expired"),
        (lambda: fake_manifest(1, ["evil.example"]), "older_version"),
        (lambda: "not a manifest", "malformed"),
    ],
    ids=["tampered", "re-keyed", "unsigned", "expired", "replayed", "garbage"],
)  # fmt: skip
async def test_a_refused_manifest_is_logged_and_the_last_good_one_kept(
    tmp_path: Path, bad: Callable[[], object], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakePeer()
    fake.document = fake_manifest(2, ["fake-hs.example"])
    config = registry_config(tmp_path, listen_port=free_port())
    async with fake.running() as fake_url, served_bridge(config) as (_, registry):
        added = await handlers.add_peer(registry, ADMIN, fake_url, fingerprint_of(FAKE_KEY))
        assert added.checked and added.peer.version == 2
        fake.document = bad()

        async def refused() -> bool:
            state = await peer_state(registry, fake_url)
            return state.problem is not None

        await until(refused)
        state = await peer_state(registry, fake_url)
        assert state.problem is not None and f"refused ({reason})" in state.problem
        assert state.version == 2
        assert state.homeservers == ("fake-hs.example",)
        allowed = await handlers.allowed_servers(registry)
        assert "fake-hs.example" in allowed.servers
        assert "evil.example" not in allowed.servers
        assert any(
            reason in r.getMessage() and "stays in force" in r.getMessage() for r in caplog.records
        )


async def test_an_unreachable_peer_keeps_its_last_good_manifest(tmp_path: Path) -> None:
    fake = FakePeer()
    config = registry_config(tmp_path, listen_port=free_port())
    async with served_bridge(config) as (_, registry):
        async with fake.running() as fake_url:
            await handlers.add_peer(registry, ADMIN, fake_url, fingerprint_of(FAKE_KEY))
            fake.status = 500

            async def problem() -> bool:
                return (await peer_state(registry, fake_url)).problem is not None

            await until(problem)
            assert "HTTP 500" in str((await peer_state(registry, fake_url)).problem)
        # Now nothing listens there at all.
        await until(lambda: _problem_has(registry, fake_url, "cannot connect"))
        state = await peer_state(registry, fake_url)
        assert state.homeservers == ("fake-hs.example",)
        assert "fake-hs.example" in (await handlers.allowed_servers(registry)).servers


async def _problem_has(registry: RegistryServices, url: str, words: str) -> bool:
    return words in str((await peer_state(registry, url)).problem)


async def test_peering_with_a_mistyped_fingerprint_is_refused_and_adds_nothing(
    tmp_path: Path,
) -> None:
    fake = FakePeer()
    config = registry_config(tmp_path, listen_port=free_port())
    async with fake.running() as fake_url, served_bridge(config) as (_, registry):
        other = fingerprint_of(generate_signing_key("zz"))
        with pytest.raises(AdminError) as caught:
            await handlers.add_peer(registry, ADMIN, fake_url, other)
        assert caught.value.kind == "invalid"
        assert "another key" in caught.value.message
        assert await handlers.list_peers(registry) == []


async def test_a_peer_that_is_down_when_added_is_checked_later(tmp_path: Path) -> None:
    fake = FakePeer()
    port = free_port()
    config = registry_config(tmp_path, listen_port=free_port())
    async with served_bridge(config) as (_, registry):
        url = f"http://127.0.0.1:{port}"
        added = await handlers.add_peer(registry, ADMIN, url, fingerprint_of(FAKE_KEY))
        assert not added.checked
        assert "unreachable" in str(added.peer.problem)
        async with fake.running(port):
            await until(lambda: _verified(registry, url))
        assert "fake-hs.example" in (await handlers.allowed_servers(registry)).servers


async def _verified(registry: RegistryServices, url: str) -> bool:
    return (await peer_state(registry, url)).version is not None
