"""Fetching and checking peers' manifests: once when an admin peers, then on a schedule.

The decision is `verify_manifest` (pure); this is the shell around it: one GET per peer
(bounded in time and size), the verdict stored, the refusal logged. A refused or unreachable
peer keeps its last good manifest: a peer's outage, or an attacker replaying an old manifest,
does not change who may federate. A warning is logged when a peer's state changes (refused,
unreachable, recovered), not at every refresh of a lasting problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

import aiohttp

from bridge.registry import store
from bridge.registry.manifest import Verdict, verify_manifest
from bridge.registry.model import MANIFEST_PATH, Fingerprint
from bridge.registry.services import RegistryServices

logger = logging.getLogger(__name__)

FETCH_TIMEOUT: Final = aiohttp.ClientTimeout(total=10)
MAX_MANIFEST_BYTES: Final = 8 * 1024 * 1024
"""A federation of a few hundred thousand visible practitioners fits; more is refused."""


@dataclass(frozen=True, slots=True)
class Unreachable:
    """The peer's manifest could not be fetched (network, HTTP status, not JSON, too big)."""

    message: str


async def fetch_manifest(http: aiohttp.ClientSession, base_url: str) -> object | Unreachable:
    """The peer's manifest as parsed JSON (not yet verified)."""
    url = base_url.rstrip("/") + MANIFEST_PATH
    try:
        async with http.get(url, timeout=FETCH_TIMEOUT, allow_redirects=False) as response:
            if response.status != 200:
                return Unreachable(f"HTTP {response.status}")
            body = await response.content.read(MAX_MANIFEST_BYTES + 1)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Unreachable(f"cannot connect ({type(exc).__name__})")
    if len(body) > MAX_MANIFEST_BYTES:
        return Unreachable(f"manifest larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        parsed: object = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return Unreachable("the answer is not JSON")
    return parsed


async def probe(
    services: RegistryServices,
    http: aiohttp.ClientSession,
    url: str,
    fingerprint: Fingerprint,
    last_version: int | None,
) -> Verdict | Unreachable:
    """Fetch and verify, storing nothing."""
    fetched = await fetch_manifest(http, url)
    if isinstance(fetched, Unreachable):
        return fetched
    return verify_manifest(fetched, fingerprint, services.now(), last_version)


def describe(outcome: Verdict | Unreachable) -> str | None:
    """The problem as stored and shown to admins (None when accepted)."""
    if isinstance(outcome, Unreachable):
        return f"unreachable: {outcome.message}"
    if outcome.accepted:
        return None
    return f"refused ({outcome.reason}): {outcome.message}"


async def check_peer(
    services: RegistryServices, http: aiohttp.ClientSession, url: str
) -> Verdict | Unreachable | None:
    """Fetch, verify and record one peer's manifest; None if the peer is not (any more) one."""
    async with services.db.sessions() as session:
        peer = await store.peer(session, url)
    if peer is None:
        return None
    outcome = await probe(services, http, url, peer.fingerprint, peer.version)
    problem = describe(outcome)
    now = services.now()
    async with services.db.sessions.begin() as session:
        if isinstance(outcome, Verdict) and outcome.manifest is not None:
            stored = await store.accept_manifest(
                session, url, peer.fingerprint, outcome.manifest, now
            )
            if stored and outcome.manifest.version != peer.version:
                logger.info(
                    "Peer %s (%s): manifest version %s accepted, %d homeserver(s)",
                    url,
                    outcome.manifest.federation,
                    outcome.manifest.version,
                    len(outcome.manifest.contents.homeservers),
                )
        else:
            assert problem is not None
            await store.record_problem(session, url, problem, now)
    if problem != peer.problem:
        if problem is None:
            logger.warning("Peer %s: manifest accepted again", url)
        else:
            logger.warning("Peer %s: %s; its last good manifest stays in force", url, problem)
    return outcome


async def refresh_peers(services: RegistryServices, http: aiohttp.ClientSession) -> None:
    """Check every peer once, concurrently."""
    async with services.db.sessions() as session:
        urls = [p.url for p in await store.peers(session)]
    await asyncio.gather(*(check_peer(services, http, url) for url in urls))


async def refresh_forever(
    services: RegistryServices, http: aiohttp.ClientSession, interval: float
) -> None:
    """Check peers now, then every `interval` seconds, until cancelled; never dies of an
    error (a database hiccup is logged and retried at the next round)."""
    while True:
        try:
            await refresh_peers(services, http)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("Checking peers' manifests failed; retrying in %s s", interval)
        await asyncio.sleep(interval)


async def background_refresher(
    services: RegistryServices, http: aiohttp.ClientSession, interval: float
) -> AsyncIterator[None]:
    """For an application's cleanup context: refresh while the application runs."""
    task = asyncio.create_task(refresh_forever(services, http, interval), name="peer-refresh")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
