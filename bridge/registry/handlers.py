"""Registry changes behind the CLI and the console: members, homeservers, peers.

Every handler takes `RegistryServices`, the actor (who asks, for the audit log) and plain
arguments; it checks them, then writes the change and its audit entry in ONE transaction.
Failures are `AdminError`s (kinds: invalid, not_found, conflict, unavailable) whose message
is for the admin as is. Reading functions (`list_members`, `list_peers`, `own_homeservers`,
`allowed_servers`, `signed_manifest`) change nothing and write no audit entry.

What a change does to the federation: the manifest's version grows on the next request, the
guards of our homeservers pick up the allow-list within their refresh interval, and peers
within theirs (the sum is under a minute with the defaults).
"""

from __future__ import annotations

import hashlib
import logging
import unicodedata
from typing import Any

from sqlalchemy.exc import IntegrityError

from bridge.admin import audit
from bridge.admin.model import Actor, AdminError
from bridge.config import is_valid_server_name
from bridge.registry import store
from bridge.registry.keys import parse_fingerprint
from bridge.registry.manifest import Verdict, build_manifest, to_ms
from bridge.registry.model import (
    AllowedServers,
    Member,
    Peer,
    PeerAdded,
    RemovedMember,
    ServerName,
)
from bridge.registry.peering import Unreachable, describe, probe
from bridge.registry.services import RegistryServices
from bridge.registry.urls import url_refusal

logger = logging.getLogger(__name__)

MAX_MEMBER_NAME = 200


def check_member_name(name: str) -> str:
    name = " ".join(name.split())
    if not name or len(name) > MAX_MEMBER_NAME:
        raise AdminError("invalid", f"a member's name has 1 to {MAX_MEMBER_NAME} characters")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise AdminError("invalid", "a member's name cannot hold control characters")
    return name


def check_server_name(server_name: str) -> ServerName:
    value = server_name.strip().lower()
    if not is_valid_server_name(value):
        raise AdminError(
            "invalid", f"{server_name!r} is not a Matrix server name (like 'matrix.example.org')"
        )
    return ServerName(value)


def check_peer_url(url: str) -> str:
    value = url.strip().rstrip("/")
    refusal = url_refusal(value)
    if refusal is not None:
        raise AdminError("invalid", refusal)
    return value


async def add_member(services: RegistryServices, actor: Actor, name: str) -> Member:
    name = check_member_name(name)
    now = services.now()
    try:
        async with services.db.sessions.begin() as session:
            if await store.member_id(session, name) is not None:
                raise AdminError("conflict", f"{name!r} is already a member")
            await store.insert_member(session, name, now)
            await audit.record(session, at=now, actor=actor, action="member_add", target=name)
    except IntegrityError:
        raise AdminError("conflict", f"{name!r} is already a member") from None
    logger.info("Member %r added by %s", name, actor)
    return Member(name, (), now)


async def remove_member(services: RegistryServices, actor: Actor, name: str) -> RemovedMember:
    """Remove a member and its homeservers (they are cut off from the federation)."""
    name = " ".join(name.split())
    async with services.db.sessions.begin() as session:
        ident = await store.member_id(session, name)
        if ident is None:
            raise AdminError("not_found", f"{name!r} is not a member")
        servers = await store.homeservers_of(session, ident)
        await store.delete_member(session, ident)
        await audit.record(
            session,
            at=services.now(),
            actor=actor,
            action="member_remove",
            target=name,
            homeservers=", ".join(servers) or None,
        )
    logger.info("Member %r removed by %s with %d homeserver(s)", name, actor, len(servers))
    return RemovedMember(name, servers)


async def add_homeserver(
    services: RegistryServices, actor: Actor, server_name: str, member: str
) -> Member:
    """Register a member's homeserver: it joins the manifest and our guards' allow-list."""
    server = check_server_name(server_name)
    member = " ".join(member.split())
    now = services.now()
    try:
        async with services.db.sessions.begin() as session:
            ident = await store.member_id(session, member)
            if ident is None:
                raise AdminError(
                    "not_found", f"{member!r} is not a member (add it first: member add)"
                )
            owner = await store.owner_of(session, server)
            if owner is not None:
                raise AdminError("conflict", f"{server} already belongs to {owner!r}")
            await store.insert_homeserver(session, server, ident, now)
            await audit.record(
                session, at=now, actor=actor, action="homeserver_add", target=server, member=member
            )
            servers = await store.homeservers_of(session, ident)
    except IntegrityError:
        raise AdminError("conflict", f"{server} is already registered") from None
    logger.info("Homeserver %s added to %r by %s", server, member, actor)
    return Member(member, servers, now)


async def remove_homeserver(services: RegistryServices, actor: Actor, server_name: str) -> str:
    """Remove a homeserver; returns the member it belonged to."""
    server = check_server_name(server_name)
    async with services.db.sessions.begin() as session:
        owner = await store.owner_of(session, server)
        if owner is None:
            raise AdminError("not_found", f"{server} is not a registered homeserver")
        await store.delete_homeserver(session, server)
        await audit.record(
            session,
            at=services.now(),
            actor=actor,
            action="homeserver_remove",
            target=server,
            member=owner,
        )
    logger.info("Homeserver %s removed from %r by %s", server, owner, actor)
    return owner


async def add_peer(
    services: RegistryServices, actor: Actor, url: str, fingerprint: str
) -> PeerAdded:
    """Trust another federation, pinned by its key's fingerprint.

    When the bridge can reach the peer now, its manifest is fetched and verified first: a
    manifest signed by another key means a mistyped fingerprint (or the wrong URL), and the
    peering is refused. An unreachable peer is added anyway and checked at each refresh.
    """
    base = check_peer_url(url)
    try:
        pinned = parse_fingerprint(fingerprint)
    except ValueError as exc:
        raise AdminError("invalid", str(exc)) from None
    if pinned == services.fingerprint:
        raise AdminError("invalid", "this is our own federation's key")
    async with services.db.sessions() as session:
        if await store.peer(session, base) is not None:
            raise AdminError("conflict", f"{base} is already a peer")
    outcome: Verdict | Unreachable = Unreachable("not checked from here")
    if services.http is not None:
        outcome = await probe(services, services.http, base, pinned, None)
    if isinstance(outcome, Verdict) and outcome.reason == "wrong_key":
        raise AdminError(
            "invalid",
            f"{base} signs its manifest with another key than {pinned}: check the "
            "fingerprint with the other federation's admin (nothing was added)",
        )
    now = services.now()
    try:
        async with services.db.sessions.begin() as session:
            await store.insert_peer(session, base, pinned, now)
            if isinstance(outcome, Verdict) and outcome.manifest is not None:
                await store.accept_manifest(session, base, pinned, outcome.manifest, now)
            elif services.http is not None:
                await store.record_problem(session, base, describe(outcome) or "", now)
            await audit.record(
                session, at=now, actor=actor, action="peer_add", target=base, fingerprint=pinned
            )
            added = await store.peer(session, base)
    except IntegrityError:
        raise AdminError("conflict", f"{base} is already a peer") from None
    assert added is not None
    logger.info("Peer %s added by %s (%s)", base, actor, describe(outcome) or "verified")
    return PeerAdded(added, added.version is not None)


async def remove_peer(services: RegistryServices, actor: Actor, peer: str) -> Peer:
    """Stop trusting a federation, named by its URL or its federation name."""
    async with services.db.sessions.begin() as session:
        found = await _find_peer(session, peer)
        await store.delete_peer(session, found.url)
        await audit.record(
            session,
            at=services.now(),
            actor=actor,
            action="peer_remove",
            target=found.url,
            federation=found.name,
        )
    logger.info("Peer %s removed by %s", found.url, actor)
    return found


async def _find_peer(session: Any, text: str) -> Peer:
    wanted = text.strip().rstrip("/")
    peers = await store.peers(session)
    by_url = [p for p in peers if p.url == wanted]
    by_name = [p for p in peers if p.name is not None and p.name == text.strip()]
    if by_url:
        return by_url[0]
    if len(by_name) == 1:
        return by_name[0]
    if by_name:
        raise AdminError("conflict", f"several peers are named {text!r}: give the URL")
    raise AdminError("not_found", f"{text!r} is not a peer (give its URL or federation name)")


async def list_members(services: RegistryServices) -> list[Member]:
    async with services.db.sessions() as session:
        return await store.members(session)


async def list_peers(services: RegistryServices) -> list[Peer]:
    async with services.db.sessions() as session:
        return await store.peers(session)


async def own_homeservers(services: RegistryServices) -> frozenset[ServerName]:
    """Our own homeservers: those registered for our members, plus the bridge's (no peers')."""
    async with services.db.sessions() as session:
        servers = set(await store.own_homeservers(session))
    return frozenset(servers | {services.own_server})


async def allowed_servers(services: RegistryServices) -> AllowedServers:
    """Our own homeservers (registered, plus the bridge's) and the homeservers of peers whose
    last verified manifest has not expired."""
    async with services.db.sessions() as session:
        own = set(await store.own_homeservers(session)) | {services.own_server}
        peers = store.peer_expiries(await store.peers(session), services.now())
        empty = await store.never_used(session)
    ordered = tuple(sorted(own | set(peers)))
    version = hashlib.sha256("\n".join(ordered).encode()).hexdigest()[:16]
    expires = {s: to_ms(at) for s, at in sorted(peers.items()) if s not in own}
    return AllowedServers(ordered, version, expires, registry_empty=empty)


async def signed_manifest(services: RegistryServices) -> dict[str, Any]:
    """Our manifest as of now, signed; its version moves on only when its content changed."""
    now = services.now()
    for attempt in range(2):
        try:
            async with services.db.sessions.begin() as session:
                contents = await store.contents(session, services.own_server)
                version = await store.version_for(session, store.digest(contents), now)
            break
        except IntegrityError:
            # Another bridge process numbered the very first manifest at the same moment.
            if attempt:
                raise
    return build_manifest(
        services.federation,
        contents,
        version=version,
        issued_at=now,
        lifetime_seconds=services.manifest_lifetime_seconds,
        signing_key=services.signing_key,
    )
