"""Three real homeservers, two federations that peer, one outsider: the registry drives who
may federate, live, through each homeserver's guard.

- A and B each belong to their own federation, each with its own bridge (a whole bridge
  application on loopback); their guards poll their bridge (`allowed_servers_url`, every
  second) and start with an empty static list. Synapse's own federation whitelist is off:
  the guard is the live mechanism (the whitelist would need a restart).
- C belongs to no federation (its own guard would let A and B in: it is the one knocking).

These homeservers are this module's own (the session's hs_a/hs_b/hs_c have static lists).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from bridge.admin import audit
from bridge.admin.handlers import activate, onboard
from bridge.registry import handlers
from bridge.registry.model import ALLOWED_SERVERS_PATH, MANIFEST_PATH
from bridge.registry.services import RegistryServices
from bridge.synapse_admin import SynapseAdmin
from deploy.local.federation import Homeserver, HomeserverSpec, LocalFederation
from tests.admin_support import add_practitioner, random_rpps, secret_of, services_for
from tests.conftest import free_port
from tests.federation_signing import SignedFederationClient
from tests.registry_support import ADMIN, registry_config, served_bridge
from tests.test_guard_synapse import (
    FAKE_MEGOLM,
    Client,
    Reply,
    federation_denied,
    refused,
    user_on,
)

pytestmark = pytest.mark.slow

DEADLINE = 20.0
"""Propagation takes about two refresh intervals (1 s each here); the deadline is generous."""
PASSWORD = "correct horse battery staple"


@dataclass
class Federation:
    hs: Homeserver
    url: str
    registry: RegistryServices


@dataclass
class World:
    a: Federation
    b: Federation
    c: Homeserver
    http: aiohttp.ClientSession


async def within(
    probe: Callable[[], Awaitable[bool]], what: str, timeout: float = DEADLINE
) -> float:
    """Poll until `probe` holds; the seconds it took (printed: they are the live delay)."""
    start = time.monotonic()
    while not await probe():
        assert time.monotonic() - start < timeout, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.2)
    took = time.monotonic() - start
    print(f"{what}: {took:.1f} s")
    return took


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        assert response.status == 200
        return await response.json()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    base = tmp_path_factory.mktemp("registry-federation")
    ports = {name: (free_port(), free_port(), free_port()) for name in "abc"}
    bridge_ports = {name: free_port() for name in "ab"}
    servers = {name: f"localhost:{ports[name][0]}" for name in "abc"}

    def member(name: str) -> HomeserverSpec:
        url = f"http://127.0.0.1:{bridge_ports[name]}{ALLOWED_SERVERS_PATH}"
        return HomeserverSpec(
            name,
            *ports[name],
            restrict_federation=False,
            testing=True,
            extra_guard_config={"allowed_servers_url": url, "refresh_seconds": 1},
        )

    outsider = HomeserverSpec(
        "c",
        *ports["c"],
        allowed_servers=(servers["a"], servers["b"]),
        restrict_federation=False,
        testing=True,
    )
    local = LocalFederation(base / "homeservers", [member("a"), member("b"), outsider])
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        bridges: dict[str, Federation] = {}
        for name, title in (("a", "Fédération A"), ("b", "Fédération B")):
            config = registry_config(
                base / f"bridge-{name}",
                server_name=servers[name],
                homeserver_url=f"http://127.0.0.1:{ports[name][1]}",
                federation_name=title,
                listen_port=bridge_ports[name],
            )
            url, registry = await stack.enter_async_context(served_bridge(config))
            org = f"Hôpital {name.upper()}"
            await handlers.add_member(registry, ADMIN, org)
            await handlers.add_homeserver(registry, ADMIN, servers[name], org)
            bridges[name] = Federation(local[name], url, registry)
        await local.start()
        stack.callback(local.stop)
        yield World(bridges["a"], bridges["b"], local["c"], http)


async def peer(world: World) -> None:
    """A and B trust each other (as each admin would type it: URL and fingerprint)."""
    a, b = world.a, world.b
    assert (await handlers.add_peer(a.registry, ADMIN, b.url, b.registry.fingerprint)).checked
    assert (await handlers.add_peer(b.registry, ADMIN, a.url, a.registry.fingerprint)).checked


async def unpeer(world: World) -> None:
    for fed in (world.a, world.b):
        for known in await handlers.list_peers(fed.registry):
            await handlers.remove_peer(fed.registry, ADMIN, known.url)


async def onboarded_on_a(world: World) -> Client:
    """A practitioner of the register onboarded on A by A's bridge, visible in its manifest,
    who chose a password and signed in."""
    hs, db = world.a.hs, world.a.registry.db
    admin = services_for(db, world.http, hs)
    rpps, last = random_rpps(), "TEST" + uuid.uuid4().hex[:6].upper()
    await add_practitioner(db, rpps, "JEANNE", last)
    done = await onboard(admin, ADMIN, rpps, visible=True)
    await activate(admin, secret_of(done.activation_url), PASSWORD)
    session = await SynapseAdmin(world.http, hs.client_url).login(done.matrix_id, PASSWORD)
    return Client(world.http, hs, done.matrix_id, session.access_token)


async def sees(reader: Client, room: str, event_id: str) -> bool:
    reply = await reader.call("GET", f"/rooms/{quote(room)}/event/{quote(event_id)}")
    return reply.status == 200


def ok(reply: Reply) -> bool:
    return reply.status == 200


async def test_onboarded_on_a_talks_to_b_until_the_peering_is_removed(world: World) -> None:
    await peer(world)
    try:
        jeanne = await onboarded_on_a(world)
        manifest = await get_json(world.http, world.a.url + MANIFEST_PATH)
        assert jeanne.user_id in manifest["users"]
        bob = await user_on(world.b.hs, world.http, "bob")
        room = await jeanne.new_room(preset="private_chat", name="Cas 12")

        await within(lambda: _ok(jeanne.invite(room, bob.user_id)), "A's guards let B in")
        assert ok(await bob.join(room, world.a.hs.server_name))
        sent = await jeanne.send(room, "m.room.encrypted", FAKE_MEGOLM)
        assert ok(sent), sent.body
        await within(lambda: sees(bob, room, sent.body["event_id"]), "B receives A's event")
        answer = await bob.send(room, "m.room.encrypted", FAKE_MEGOLM)
        assert ok(answer), answer.body
        await within(lambda: sees(jeanne, room, answer.body["event_id"]), "A receives B's")

        # A's admin stops trusting B: A's guard cuts B off, without restarting anything.
        await handlers.remove_peer(world.a.registry, ADMIN, "Fédération B")

        async def cut_off() -> bool:
            reply = await jeanne.send(room, "m.room.encrypted", FAKE_MEGOLM)
            return reply.status == 403 and reply.rule == "room_shared_with_outsider"

        await within(cut_off, "B cut off by A after the peering was removed")
        bob2 = await user_on(world.b.hs, world.http, "bob2")
        other = await jeanne.new_room(preset="private_chat")
        refused(
            await jeanne.invite(other, bob2.user_id), "server_not_allowed", world.b.hs.server_name
        )
        # ... and B's users cannot reach A's either (A's guard refuses B's invitation).
        bobs_room = await bob.new_room(preset="private_chat")
        assert (await bob.invite(bobs_room, jeanne.user_id)).status == 403
    finally:
        await unpeer(world)


async def _ok(call: Awaitable[Reply]) -> bool:
    return ok(await call)


async def test_c_never_gets_in(world: World) -> None:
    await peer(world)
    try:
        alice = await user_on(world.a.hs, world.http, "alice")
        bob = await user_on(world.b.hs, world.http, "bob")
        carol = await user_on(world.c, world.http, "carol")
        room = await alice.new_room(preset="private_chat")
        await within(lambda: _ok(alice.invite(room, bob.user_id)), "peering in force")
        refused(await alice.invite(room, carol.user_id), "server_not_allowed", world.c.server_name)
        federation_denied(await carol.join(room, world.a.hs.server_name), world.c.server_name)
        carols = await carol.new_room(preset="private_chat")
        for member in (alice, bob):
            assert (await carol.invite(carols, member.user_id)).status == 403
        for fed in (world.a, world.b):
            allowed = await get_json(world.http, fed.url + ALLOWED_SERVERS_PATH)
            assert world.c.server_name not in allowed["servers"]
    finally:
        await unpeer(world)


async def test_a_homeserver_added_then_removed_in_the_registry_is_let_in_then_cut_off_live(
    world: World,
) -> None:
    """Synapse's own federation whitelist follows the registry, without a restart: C, signing
    with its own key, reads a device list on A only while A's registry lists C."""
    alice = await user_on(world.a.hs, world.http, "alice")
    as_c = SignedFederationClient.of(world.c)
    uri = f"/_matrix/federation/v1/user/devices/{quote(alice.user_id, safe='')}"

    async def devices_status() -> int:
        return (await as_c.request(world.http, "GET", world.a.hs, uri)).status

    assert await devices_status() == 403
    registry, c_name = world.a.registry, world.c.server_name
    await handlers.add_member(registry, ADMIN, "Clinique C")
    await handlers.add_homeserver(registry, ADMIN, c_name, "Clinique C")
    try:
        let_in = await within(lambda: _is(devices_status(), 200), "C let in by A's registry")
    finally:
        await handlers.remove_homeserver(registry, ADMIN, c_name)
        await handlers.remove_member(registry, ADMIN, "Clinique C")
    cut_off = await within(lambda: _is(devices_status(), 403), "C cut off by A's registry")
    assert max(let_in, cut_off) < 30
    denied = await as_c.request(world.http, "GET", world.a.hs, uri)
    assert f"Federation denied with {c_name}" in denied.body["error"]


async def _is(status: Awaitable[int], expected: int) -> bool:
    return await status == expected


async def test_a_tampered_manifest_is_refused_and_the_last_good_one_kept(world: World) -> None:
    """A peers with "B" through a URL that relays B's real manifest, then starts adding C to
    it: the signature no longer matches, A's bridge refuses it, B stays allowed, C stays out."""
    tamper = False

    async def relay(request: web.Request) -> web.Response:
        async with world.http.get(world.b.url + MANIFEST_PATH) as response:
            document: dict[str, Any] = await response.json()
        if tamper:
            document["homeservers"] = sorted([*document["homeservers"], world.c.server_name])
        return web.json_response(document)

    app = web.Application()
    app.router.add_get(MANIFEST_PATH, relay)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    fake_url = f"http://127.0.0.1:{port}"
    try:
        await handlers.add_peer(world.b.registry, ADMIN, world.a.url, world.a.registry.fingerprint)
        added = await handlers.add_peer(
            world.a.registry, ADMIN, fake_url, world.b.registry.fingerprint
        )
        assert added.checked
        alice = await user_on(world.a.hs, world.http, "alice")
        bob = await user_on(world.b.hs, world.http, "bob")
        carol = await user_on(world.c, world.http, "carol")
        room = await alice.new_room(preset="private_chat")
        await within(lambda: _ok(alice.invite(room, bob.user_id)), "B allowed via the relay")

        tamper = True

        async def refused_by_a() -> bool:
            peers = await handlers.list_peers(world.a.registry)
            return any(p.problem and "bad_signature" in p.problem for p in peers)

        await within(refused_by_a, "tampered manifest refused")
        (kept,) = await handlers.list_peers(world.a.registry)
        assert world.b.hs.server_name in kept.homeservers
        assert world.c.server_name not in kept.homeservers
        refused(await alice.invite(room, carol.user_id), "server_not_allowed")
        second = await alice.new_room(preset="private_chat")
        assert ok(await alice.invite(second, bob.user_id)), "the last good manifest stays"
    finally:
        await unpeer(world)
        await runner.cleanup()


async def test_a_peer_whose_manifest_expired_is_cut_off_until_a_fresh_one_verifies(
    world: World,
) -> None:
    """A's clock jumps past the lifetime of B's manifests (as if B had published nothing for
    a day): A's guard cuts B off and A's audit log says why. Once B publishes a manifest that
    is fresh at that time (B's clock jumps too), it verifies and B is let in again, with
    nobody doing anything."""
    await peer(world)
    real_now = world.a.registry.now
    try:
        alice = await user_on(world.a.hs, world.http, "alice")
        bob = await user_on(world.b.hs, world.http, "bob")
        room = await alice.new_room(preset="private_chat")
        await within(lambda: _ok(alice.invite(room, bob.user_id)), "peering in force")

        lifetime = timedelta(seconds=world.b.registry.manifest_lifetime_seconds)

        def later() -> datetime:
            return real_now() + lifetime + timedelta(minutes=1)

        world.a.registry.now = later

        async def b_refused() -> bool:
            other = await alice.new_room(preset="private_chat")
            reply = await alice.invite(other, bob.user_id)
            return reply.status == 403 and reply.rule == "server_not_allowed"

        await within(b_refused, "B cut off by A once B's manifest expired")
        # The allow-list drops B as soon as its manifest lapses; the note that says why comes
        # with A's next poll of B, which may be a moment later.
        notes: list[audit.AuditEntry] = []

        async def expiry_noted() -> bool:
            nonlocal notes
            async with world.a.registry.db.sessions() as session:
                notes = await audit.recent(session, action="peer_manifest_expired")
            return bool(notes)

        await within(expiry_noted, "the expiry noted in A's audit log")
        assert [n.target for n in notes] == [world.b.url]
        assert world.b.hs.server_name in str(notes[0].detail["homeservers"])

        world.b.registry.now = later
        await within(lambda: _ok(alice.invite(room, bob.user_id)), "B back after a fresh one")
        async with world.a.registry.db.sessions() as session:
            renewed = await audit.recent(session, action="peer_manifest_renewed")
        assert [n.target for n in renewed] == [world.b.url]
    finally:
        world.a.registry.now = world.b.registry.now = real_now
        await unpeer(world)
