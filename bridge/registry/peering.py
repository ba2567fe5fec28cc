"""Fetching and checking peers' manifests: once when an admin peers, then on a schedule.

The decision is `verify_manifest` (pure); this is the shell around it: one GET per peer
(bounded in time and size), the verdict stored, the refusal logged. A refused or unreachable
peer keeps its last good manifest until that manifest expires: a short outage, or an attacker
replaying an old manifest, does not change who may federate, but a peer that publishes no
valid manifest for a whole manifest lifetime is cut off (the allow-list leaves out expired
peers) until a fresh one verifies. A warning is logged when a peer's state changes (refused,
unreachable, expired, recovered), not at every refresh of a lasting problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession

from bridge.admin import audit
from bridge.registry import store
from bridge.registry.manifest import Verdict, verify_manifest
from bridge.registry.model import MANIFEST_PATH, Fingerprint, Peer
from bridge.registry.services import RegistryServices
from bridge.registry.urls import url_refusal

logger = logging.getLogger(__name__)

FETCH_TIMEOUT: Final = aiohttp.ClientTimeout(total=10)
MAX_MANIFEST_BYTES: Final = 8 * 1024 * 1024
"""A federation of a few hundred thousand visible practitioners fits; more is refused."""


@dataclass(frozen=True, slots=True)
class Unreachable:
    """The peer's manifest could not be fetched (network, HTTP status, not JSON, too big), or
    was not even asked for (`kind` "refused (insecure_url)": plain http off this machine)."""

    message: str
    kind: str = "unreachable"


class _TooBig(Exception):
    pass


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, however it is chunked, or `_TooBig` as soon as it passes `limit`
    (a declared Content-Length over it is refused before reading anything)."""
    if response.content_length is not None and response.content_length > limit:
        raise _TooBig
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise _TooBig
    return bytes(body)


async def fetch_manifest(
    http: aiohttp.ClientSession,
    base_url: str,
    *,
    timeout: aiohttp.ClientTimeout = FETCH_TIMEOUT,
    max_bytes: int = MAX_MANIFEST_BYTES,
) -> object | Unreachable:
    """The peer's manifest as parsed JSON (not yet verified).

    The body is read to its end within `max_bytes` and `timeout` (which covers the whole
    exchange, so a peer trickling bytes cannot hold a refresh for ever)."""
    url = base_url.rstrip("/") + MANIFEST_PATH
    refusal = url_refusal(base_url)
    if refusal is not None:
        return Unreachable(refusal, kind="refused (insecure_url)")
    try:
        async with http.get(url, timeout=timeout, allow_redirects=False) as response:
            if response.status != 200:
                return Unreachable(f"HTTP {response.status}")
            body = await _read_capped(response, max_bytes)
    except _TooBig:
        return Unreachable(f"manifest larger than {max_bytes} bytes")
    except TimeoutError:
        return Unreachable(f"no complete answer within {timeout.total} s")
    except aiohttp.ClientError as exc:
        return Unreachable(f"cannot connect ({type(exc).__name__})")
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
        return f"{outcome.kind}: {outcome.message}"
    if outcome.accepted:
        return None
    return f"refused ({outcome.reason}): {outcome.message}"


SYSTEM_ACTOR: Final = "(bridge)"
"""The audit log's actor for what the bridge notes by itself (a peer's manifest expiring)."""


async def check_peer(
    services: RegistryServices, http: aiohttp.ClientSession, url: str
) -> Verdict | Unreachable | None:
    """Fetch, verify and record one peer's manifest; None if the peer is not (any more) one.

    The expiry of the peer's last good manifest, and its renewal, go into the audit log
    (once each): the allow-list drops an expired peer's servers by itself, this says why."""
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
            if stored and peer.stale(now):
                await _note(session, now, peer, "peer_manifest_renewed", outcome.manifest.version)
                logger.warning("Peer %s: a fresh manifest verified; its servers are back", url)
        else:
            assert problem is not None
            if await store.claim_expiry(session, url, now):
                await _note(session, now, peer, "peer_manifest_expired", peer.version, problem)
                logger.warning(
                    "Peer %s: its manifest expired at %s and no valid one replaced it (%s); "
                    "its homeservers are cut off until one verifies",
                    url,
                    peer.expires_at,
                    problem,
                )
            await store.record_problem(session, url, problem, now)
    if problem != peer.problem:
        if problem is None:
            logger.warning("Peer %s: manifest accepted again", url)
        elif peer.stale(now):
            logger.warning("Peer %s: %s; its manifest has expired", url, problem)
        else:
            logger.warning("Peer %s: %s; its last good manifest stays in force", url, problem)
    return outcome


async def _note(
    session: AsyncSession,
    now: datetime,
    peer: Peer,
    action: str,
    version: int | None,
    problem: str | None = None,
) -> None:
    await audit.record(
        session,
        at=now,
        actor=SYSTEM_ACTOR,
        action=action,
        target=peer.url,
        federation=peer.name,
        version=version,
        expired_at=f"{peer.expires_at:%Y-%m-%d %H:%M:%S} UTC" if peer.expires_at else None,
        homeservers=", ".join(peer.homeservers) or None,
        problem=problem,
    )


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
