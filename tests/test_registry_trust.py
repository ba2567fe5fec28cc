"""Trust in peers that cannot go stale: a manifest is read whole (however it is chunked) within
its size and time limits, an expired manifest takes its peer's servers off the allow-list (and
says so in the audit log) until a fresh one verifies, and peer bridges are reached over https
except on this machine. Real aiohttp servers on loopback play the peers; time is moved, not
waited for; the database runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from bridge.admin import audit
from bridge.admin.model import AdminError
from bridge.db import Database
from bridge.guard.allowlist import parse_answer
from bridge.registry import handlers, store
from bridge.registry.manifest import to_ms, verify_manifest
from bridge.registry.model import ALLOWED_SERVERS_PATH, ServerName
from bridge.registry.peering import Unreachable, check_peer, fetch_manifest
from bridge.registry.services import RegistryServices
from bridge.registry.urls import url_refusal
from tests.admin_support import bridge_database
from tests.conftest import free_port
from tests.registry_support import (
    ADMIN,
    LIFETIME,
    PEER_FP,
    START,
    Clock,
    Peer,
    peer_manifest,
    registry_config,
    served_bridge,
    services_on,
)

# --- Reading the whole manifest -----------------------------------------------------------


async def test_a_chunked_manifest_under_the_limit_is_read_whole_and_verifies() -> None:
    now = datetime.now(START.tzinfo)
    big = peer_manifest(now, servers=tuple(f"hs{n}.peer.example" for n in range(3000)))
    peer = Peer(big)
    peer.chunk, peer.pause = 4096, 0.001
    async with peer.running() as url, aiohttp.ClientSession() as http:
        fetched = await fetch_manifest(http, url)
    assert not isinstance(fetched, Unreachable), fetched
    verdict = verify_manifest(fetched, PEER_FP, now, None)
    assert verdict.manifest is not None, verdict
    assert len(verdict.manifest.contents.homeservers) == 3000


@pytest.mark.parametrize("declared", [False, True], ids=["chunked", "content-length"])
async def test_a_manifest_over_the_limit_is_refused_as_too_big(declared: bool) -> None:
    peer = Peer(None)
    peer.body = b'{"padding": "' + b"x" * 50_000 + b'"}'
    peer.chunk = 1000
    if declared:
        peer.declared_length = len(peer.body)
    async with peer.running() as url, aiohttp.ClientSession() as http:
        fetched = await fetch_manifest(http, url, max_bytes=20_000)
        assert isinstance(fetched, Unreachable)
        assert "larger than 20000 bytes" in fetched.message
        # Exactly at the limit is still read (the cap refuses only what exceeds it).
        peer.body, peer.declared_length = b'"' + b"y" * 19_998 + b'"', None
        assert await fetch_manifest(http, url, max_bytes=20_000) == "y" * 19_998


async def test_a_slow_peer_is_read_while_in_time_and_dropped_when_too_slow() -> None:
    now = datetime.now(START.tzinfo)
    peer = Peer(peer_manifest(now))
    peer.chunk, peer.pause = 64, 0.02
    async with peer.running() as url, aiohttp.ClientSession() as http:
        in_time = await fetch_manifest(http, url)
        assert verify_manifest(in_time, PEER_FP, now, None).accepted
        peer.pause = 0.3  # a trickle: the whole answer would take minutes
        too_slow = await fetch_manifest(http, url, timeout=aiohttp.ClientTimeout(total=1))
    assert isinstance(too_slow, Unreachable)
    assert "no complete answer within 1 s" in too_slow.message


# --- Expiry takes a peer off the allow-list ------------------------------------------------


@pytest_asyncio.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with bridge_database(request.param, tmp_path) as opened:
        yield opened


async def notes(services: RegistryServices) -> list[audit.AuditEntry]:
    async with services.db.sessions() as session:
        entries = await audit.recent(session, limit=100)
    return [e for e in reversed(entries) if e.action.startswith("peer_manifest_")]


async def allowed(services: RegistryServices) -> tuple[ServerName, ...]:
    return (await handlers.allowed_servers(services)).servers


async def test_an_expired_manifest_cuts_the_peer_off_until_a_fresh_one_verifies(
    db: Database,
) -> None:
    clock = Clock()
    peer = Peer(peer_manifest(clock()))
    async with peer.running() as url, aiohttp.ClientSession() as http:
        services = services_on(db, http=http, now=clock)
        added = await handlers.add_peer(services, ADMIN, url, PEER_FP)
        assert added.checked
        assert "peer-hs.example" in await allowed(services)

        # The peer goes down: its last good manifest stays in force while it is valid.
        peer.status = 503
        clock.advance(minutes=59)
        await check_peer(services, http, url)
        assert "peer-hs.example" in await allowed(services)
        assert await notes(services) == []

        # Past the expiry the servers are gone, whether or not a refresh ran since.
        clock.advance(minutes=2)
        assert "peer-hs.example" not in await allowed(services)
        # The refresh that first sees it says why, once.
        for _ in range(3):
            await check_peer(services, http, url)
        expired = await notes(services)
        assert [(e.action, e.target, e.actor) for e in expired] == [
            ("peer_manifest_expired", url, "(bridge)")
        ]
        assert expired[0].detail["homeservers"] == "peer-hs.example"
        assert "HTTP 503" in str(expired[0].detail["problem"])
        state = (await handlers.list_peers(services))[0]
        assert state.stale(clock()) and "HTTP 503" in str(state.problem)

        # A replay of the old manifest, or a copy of it with a longer expiry, changes nothing.
        old = peer.document
        peer.status = 200
        await check_peer(services, http, url)
        assert "peer-hs.example" not in await allowed(services)
        assert isinstance(old, dict)
        peer.document = old | {"expires_at": old["expires_at"] + 10 * LIFETIME * 1000}
        await check_peer(services, http, url)
        assert "peer-hs.example" not in await allowed(services)
        assert len(await notes(services)) == 1

        # The peer publishes again: it is back at the next check, by itself.
        peer.document = peer_manifest(clock())
        await check_peer(services, http, url)
        assert "peer-hs.example" in await allowed(services)
        assert [e.action for e in await notes(services)] == [
            "peer_manifest_expired",
            "peer_manifest_renewed",
        ]
        # ... and the next expiry is noted again.
        peer.status = 500
        clock.advance(hours=2)
        await check_peer(services, http, url)
        assert "peer-hs.example" not in await allowed(services)
        assert [e.action for e in await notes(services)][-1] == "peer_manifest_expired"


async def test_expiry_is_noted_once_by_concurrent_refreshers(db: Database) -> None:
    """Several bridge processes on one database refresh the same peer at the same moment."""
    clock = Clock()
    peer = Peer(peer_manifest(clock()))
    async with peer.running() as url, aiohttp.ClientSession() as http:
        services = services_on(db, http=http, now=clock)
        await handlers.add_peer(services, ADMIN, url, PEER_FP)
        peer.status = 502
        clock.advance(hours=3)
        await asyncio.gather(*(check_peer(services, http, url) for _ in range(4)))
    assert [e.action for e in await notes(services)] == ["peer_manifest_expired"]


async def test_the_whole_bridge_serves_an_allow_list_without_expired_peers(
    tmp_path: Path,
) -> None:
    """Over HTTP, as the guards and the bot read it: the list and its version move."""
    clock = Clock(datetime.now(START.tzinfo))
    peer = Peer(peer_manifest(clock()))
    config = registry_config(tmp_path, listen_port=free_port())
    async with (
        peer.running() as url,
        served_bridge(config) as (bridge_url, services),
        aiohttp.ClientSession() as http,
    ):
        services.now = clock
        await handlers.add_peer(services, ADMIN, url, PEER_FP)

        async def served() -> dict[str, Any]:
            async with http.get(bridge_url + ALLOWED_SERVERS_PATH) as response:
                body: dict[str, Any] = await response.json()
            return body

        before = await served()
        assert "peer-hs.example" in before["servers"]
        # Guards and the bot read when the peer's servers end, to apply it while we are down.
        ends = to_ms(clock()) + LIFETIME * 1000
        assert before["expires"] == {"peer-hs.example": ends}
        answer = parse_answer(before)
        assert answer is not None and answer.lapsed(ends) == {"peer-hs.example"}
        peer.status = 503
        clock.advance(hours=1, seconds=1)
        after = await served()
        assert after["servers"] == ["own.test"]
        assert after["version"] != before["version"]


# --- Peers over https only, except on this machine ----------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://bridge.peer.example",
        "HTTPS://bridge.peer.example:8443/base",
        "http://127.0.0.1:8080",
        "http://127.31.4.5",
        "http://[::1]:9000",
        "http://localhost:8008",
        "http://LocalHost.",
    ],
)
def test_https_or_loopback_urls_are_accepted(url: str) -> None:
    assert url_refusal(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://bridge.peer.example",
        "http://10.0.0.7:8080",
        "http://192.168.1.2",
        "http://[fe80::1]",
        "http://localhost.evil.example",
        "http://127.0.0.1.evil.example",
        "http://evil.example#@127.0.0.1",
        "http://127.0.0.1@evil.example",
        "http://2130706433",
        "http://0x7f000001",
        "http://127.0.0.1:notaport",
        "ftp://127.0.0.1",
        "ws://bridge.peer.example",
        "//bridge.peer.example",
    ],
)
def test_plain_http_off_this_machine_and_other_schemes_are_refused(url: str) -> None:
    refusal = url_refusal(url)
    assert refusal is not None
    if url.startswith("http://") and "@" not in url and "#" not in url and "notaport" not in url:
        assert "plain http" in refusal and "https" in refusal


async def test_adding_a_plain_http_peer_is_refused_and_adds_nothing(tmp_path: Path) -> None:
    async with bridge_database("sqlite", tmp_path) as db:
        services = services_on(db)
        with pytest.raises(AdminError) as caught:
            await handlers.add_peer(services, ADMIN, "http://bridge.peer.example", PEER_FP)
        assert caught.value.kind == "invalid"
        assert "plain http" in caught.value.message
        assert await handlers.list_peers(services) == []


async def test_a_stored_plain_http_peer_is_not_fetched_and_expires(db: Database) -> None:
    """A peer added over http before this rule: never asked again, cut off at its expiry."""
    clock = Clock()
    url = "http://bridge.peer.example"
    async with aiohttp.ClientSession() as http:
        services = services_on(db, http=http, now=clock)
        verdict = verify_manifest(peer_manifest(clock()), PEER_FP, clock(), None)
        assert verdict.manifest is not None
        async with db.sessions.begin() as session:
            await store.insert_peer(session, url, PEER_FP, clock())
            assert await store.accept_manifest(session, url, PEER_FP, verdict.manifest, clock())
        outcome = await check_peer(services, http, url)
        assert isinstance(outcome, Unreachable)
        state = (await handlers.list_peers(services))[0]
        assert state.problem is not None
        assert state.problem.startswith("refused (insecure_url)") and "https" in state.problem
        clock.advance(seconds=LIFETIME + 1)
        await check_peer(services, http, url)
        assert "peer-hs.example" not in await allowed(services)
        assert [e.action for e in await notes(services)] == ["peer_manifest_expired"]
