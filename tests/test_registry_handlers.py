"""The registry's handlers on SQLite and PostgreSQL: members, homeservers, peers, the manifest's
version, the allow-list, and the audit entries that go with every change."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from signedjson.key import generate_signing_key

from bridge.admin import audit
from bridge.admin.model import AdminError
from bridge.db import Database
from bridge.registry import handlers, store
from bridge.registry.keys import fingerprint_of
from bridge.registry.manifest import Contents, Manifest, MemberEntry, verify_manifest
from bridge.registry.model import FederationName, ServerName
from bridge.registry.services import RegistryServices
from tests.admin_support import bridge_database
from tests.registry_support import ADMIN, Clock, services_on

PEER_KEY = fingerprint_of(generate_signing_key("p1"))


@pytest_asyncio.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with bridge_database(request.param, tmp_path) as opened:
        yield opened


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def services(db: Database, clock: Clock) -> RegistryServices:
    return services_on(db, now=clock)


async def actions(services: RegistryServices) -> list[tuple[str, str | None, str]]:
    async with services.db.sessions() as session:
        entries = await audit.recent(session, limit=100)
    return [(e.action, e.target, e.actor) for e in reversed(entries)]


async def test_members_and_their_homeservers_are_listed_and_audited(
    services: RegistryServices,
) -> None:
    await handlers.add_member(services, ADMIN, "  CHU   Nord ")
    await handlers.add_member(services, ADMIN, "Clinique du Parc")
    await handlers.add_homeserver(services, ADMIN, "Matrix.CHU-Nord.fr", "CHU Nord")
    member = await handlers.add_homeserver(services, ADMIN, "hs2.chu-nord.fr:8448", "CHU Nord")
    assert member.homeservers == ("hs2.chu-nord.fr:8448", "matrix.chu-nord.fr")
    listed = await handlers.list_members(services)
    assert [(m.name, m.homeservers) for m in listed] == [
        ("CHU Nord", ("hs2.chu-nord.fr:8448", "matrix.chu-nord.fr")),
        ("Clinique du Parc", ()),
    ]
    assert await actions(services) == [
        ("member_add", "CHU Nord", ADMIN),
        ("member_add", "Clinique du Parc", ADMIN),
        ("homeserver_add", "matrix.chu-nord.fr", ADMIN),
        ("homeserver_add", "hs2.chu-nord.fr:8448", ADMIN),
    ]


async def test_removing_a_member_removes_its_homeservers(services: RegistryServices) -> None:
    await handlers.add_member(services, ADMIN, "CHU Nord")
    await handlers.add_homeserver(services, ADMIN, "a.example", "CHU Nord")
    await handlers.add_homeserver(services, ADMIN, "b.example", "CHU Nord")
    removed = await handlers.remove_member(services, ADMIN, "CHU Nord")
    assert removed.homeservers == ("a.example", "b.example")
    assert await handlers.list_members(services) == []
    assert (await handlers.allowed_servers(services)).servers == ("own.test",)
    async with services.db.sessions() as session:
        last = (await audit.recent(session, limit=1))[0]
    assert (last.action, last.detail) == ("member_remove", {"homeservers": "a.example, b.example"})


BAD_REQUESTS: list[tuple[Callable[[RegistryServices], Awaitable[Any]], str, str]] = [
    (lambda s: handlers.add_member(s, ADMIN, "   "), "invalid", "1 to 200"),
    (lambda s: handlers.add_member(s, ADMIN, "x" * 201), "invalid", "1 to 200"),
    (lambda s: handlers.add_member(s, ADMIN, "A\x00B"), "invalid", "control"),
    (lambda s: handlers.add_member(s, ADMIN, "Existing"), "conflict", "already a member"),
    (lambda s: handlers.remove_member(s, ADMIN, "Nobody"), "not_found", "not a member"),
    (
        lambda s: handlers.add_homeserver(s, ADMIN, "bad name!", "Existing"),
        "invalid",
        "not a Matrix server name",
    ),
    (
        lambda s: handlers.add_homeserver(s, ADMIN, "new.example", "Nobody"),
        "not_found",
        "member add",
    ),
    (
        lambda s: handlers.add_homeserver(s, ADMIN, "taken.example", "Other"),
        "conflict",
        "already belongs to 'Existing'",
    ),
    (
        lambda s: handlers.remove_homeserver(s, ADMIN, "unknown.example"),
        "not_found",
        "not a registered homeserver",
    ),
    (lambda s: handlers.add_peer(s, ADMIN, "ftp://x", PEER_KEY), "invalid", "bridge URL"),
    (
        lambda s: handlers.add_peer(s, ADMIN, "https://peer.example", "abc"),
        "invalid",
        "fingerprint",
    ),
    (
        lambda s: handlers.add_peer(s, ADMIN, "https://peer.example", s.fingerprint),
        "invalid",
        "our own",
    ),
    (
        lambda s: handlers.add_peer(s, ADMIN, "https://known.example/", PEER_KEY),
        "conflict",
        "already a peer",
    ),
    (lambda s: handlers.remove_peer(s, ADMIN, "nobody"), "not_found", "not a peer"),
]


async def test_bad_requests_are_refused_clearly_and_change_nothing(
    services: RegistryServices,
) -> None:
    """All cases on one database (each refusal changes nothing, which is the point)."""
    await handlers.add_member(services, ADMIN, "Existing")
    await handlers.add_member(services, ADMIN, "Other")
    await handlers.add_homeserver(services, ADMIN, "taken.example", "Existing")
    await handlers.add_peer(services, ADMIN, "https://known.example", PEER_KEY)
    before = await actions(services)
    members = await handlers.list_members(services)
    peers = await handlers.list_peers(services)
    for number, (call, kind, words) in enumerate(BAD_REQUESTS):
        with pytest.raises(AdminError) as caught:
            await call(services)
        assert (number, caught.value.kind) == (number, kind)
        assert words in caught.value.message, (number, caught.value.message)
    assert await actions(services) == before
    assert await handlers.list_members(services) == members
    assert await handlers.list_peers(services) == peers


async def test_a_peer_added_without_network_waits_for_the_refresher(
    services: RegistryServices,
) -> None:
    added = await handlers.add_peer(services, ADMIN, "https://peer.example/", PEER_KEY)
    assert not added.checked
    assert added.peer.url == "https://peer.example"
    assert added.peer.fingerprint == PEER_KEY
    assert added.peer.homeservers == ()
    removed = await handlers.remove_peer(services, ADMIN, "https://peer.example")
    assert removed.url == "https://peer.example"
    assert await handlers.list_peers(services) == []
    async with services.db.sessions() as session:
        entries = await audit.recent(session, limit=2)
    assert [(e.action, e.detail) for e in entries] == [
        ("peer_remove", {"federation": None}),
        ("peer_add", {"fingerprint": PEER_KEY}),
    ]


async def test_the_manifest_version_moves_only_when_the_content_changes(
    services: RegistryServices, clock: Clock
) -> None:
    first = await handlers.signed_manifest(services)
    clock.advance(minutes=5)
    again = await handlers.signed_manifest(services)
    assert (first["version"], again["version"]) == (1, 1)
    assert again["issued_at"] > first["issued_at"]
    await handlers.add_member(services, ADMIN, "CHU Nord")
    assert (await handlers.signed_manifest(services))["version"] == 2  # a new member
    await handlers.add_homeserver(services, ADMIN, "hs.chu-nord.fr", "CHU Nord")
    third = await handlers.signed_manifest(services)
    assert third["version"] == 3
    assert third["homeservers"] == ["hs.chu-nord.fr", "own.test"]
    assert (await handlers.signed_manifest(services))["version"] == 3
    await handlers.remove_homeserver(services, ADMIN, "hs.chu-nord.fr")
    fourth = await handlers.signed_manifest(services)
    assert fourth["version"] == 4
    assert fourth["homeservers"] == ["own.test"]


async def test_the_manifest_verifies_and_lists_only_visible_practitioners(
    services: RegistryServices, clock: Clock
) -> None:
    await handlers.add_member(services, ADMIN, "CHU Nord")
    await handlers.add_homeserver(services, ADMIN, "hs.chu-nord.fr", "CHU Nord")
    async with services.db.sessions.begin() as session:
        for rpps, matrix_id, visible in [
            ("10000000001", "@anne:hs.chu-nord.fr", True),
            ("10000000002", "@bruno:hs.chu-nord.fr", False),
        ]:
            await session.execute(
                sa.text(
                    "INSERT INTO directory_link (rpps, matrix_id, visible, linked_at) "
                    "VALUES (:r, :m, :v, :t)"
                ),
                {"r": rpps, "m": matrix_id, "v": visible, "t": clock()},
            )
    document = await handlers.signed_manifest(services)
    verdict = verify_manifest(json.loads(json.dumps(document)), services.fingerprint, clock(), 0)
    assert verdict.manifest is not None, verdict
    assert verdict.manifest.contents.users == ("@anne:hs.chu-nord.fr",)
    assert verdict.manifest.federation == "Fédération test"
    assert [m.name for m in verdict.manifest.contents.members] == ["CHU Nord"]


async def test_allowed_servers_are_ours_and_verified_peers_and_change_version(
    services: RegistryServices, clock: Clock
) -> None:
    initial = await handlers.allowed_servers(services)
    assert initial.servers == ("own.test",)
    assert initial.registry_empty  # never held anything: followers keep their members
    await handlers.add_member(services, ADMIN, "CHU Nord")
    await handlers.add_homeserver(services, ADMIN, "hs.chu-nord.fr", "CHU Nord")
    await handlers.add_peer(services, ADMIN, "https://peer.example", PEER_KEY)
    ours = await handlers.allowed_servers(services)
    assert ours.servers == ("hs.chu-nord.fr", "own.test")  # the peer is not verified yet
    assert ours.version != initial.version
    peer_manifest = Manifest(
        FederationName("Peer"),
        4,
        clock(),
        clock() + timedelta(hours=1),
        Contents.of([MemberEntry("P", (ServerName("peer-hs.example"),))]),
    )
    async with services.db.sessions.begin() as session:
        assert await store.accept_manifest(
            session, "https://peer.example", PEER_KEY, peer_manifest, clock()
        )
    withpeer = await handlers.allowed_servers(services)
    assert withpeer.servers == ("hs.chu-nord.fr", "own.test", "peer-hs.example")
    async with services.db.sessions.begin() as session:
        older = Manifest(
            FederationName("Peer"), 3, clock(), clock(), Contents.of([], ["old.example"])
        )
        assert not await store.accept_manifest(
            session, "https://peer.example", PEER_KEY, older, clock()
        )
    assert (await handlers.allowed_servers(services)).servers == withpeer.servers
    await handlers.remove_peer(services, ADMIN, "Peer")  # by its federation name
    assert (await handlers.allowed_servers(services)).servers == ("hs.chu-nord.fr", "own.test")
    await handlers.remove_member(services, ADMIN, "CHU Nord")
    emptied = await handlers.allowed_servers(services)
    # Emptied by an admin (the audit log says so), not lost: followers apply it.
    assert emptied.servers == ("own.test",) and not emptied.registry_empty


async def test_concurrent_requests_agree_on_the_version(services: RegistryServices) -> None:
    """Several bridge workers may serve the manifest from one database at the same moment."""
    first = await asyncio.gather(*(handlers.signed_manifest(services) for _ in range(6)))
    assert {d["version"] for d in first} == {1}
    await handlers.add_member(services, ADMIN, "CHU Nord")
    after = await asyncio.gather(*(handlers.signed_manifest(services) for _ in range(6)))
    assert {d["version"] for d in after} == {2}
