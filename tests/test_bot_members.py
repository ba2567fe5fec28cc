"""The bot's member servers follow the federation registry through a running bridge.

The bridge is the real application (registry on SQLite and PostgreSQL) on a loopback port;
homeservers are onboarded and removed with the registry's handlers, as `caducee admin` and the
console do; the bot's live list asks the bridge's public allow-list like the guards do.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.commands.context import CommandSettings
from bot.commands.policy import is_member_user
from bot.config import BotConfig, ConfigError, parse_config
from bot.events import EventRouter, TaskSet, may_join
from bot.members import RegistryMemberServers, open_member_servers
from bridge.guard.allowlist import parse_answer
from bridge.http.app import create_app
from bridge.registry import handlers
from bridge.registry.model import ALLOWED_SERVERS_PATH
from bridge.registry.routes import REGISTRY
from bridge.registry.services import RegistryServices
from tests.bridge_http_support import bridge_config
from tests.matrix_helpers import eventually
from tests.registry_support import ADMIN

BOT_SERVER = "clinic.test"  # the bridge's own homeserver, the bot's too
NEW = "matrix.new-clinic.test"
SECRET = "bridge-" + "x" * 40


@asynccontextmanager
async def bridge(
    tmp_path: Path, store_url: str, *, in_use: bool = True
) -> AsyncIterator[tuple[str, RegistryServices]]:
    """The bridge application served on loopback: its URL and its registry services.

    `in_use`: the registry already holds a member (with no homeserver yet), as a deployed
    one does; a registry that never held anything cuts no one off (see the first test).
    """
    database_url = store_url.replace("sqlite://", "sqlite+aiosqlite://", 1)
    app = create_app(
        bridge_config(tmp_path, server_name=BOT_SERVER, database_url=database_url),
        create_database=True,
    )
    server = TestServer(app)
    await server.start_server()
    try:
        if in_use:
            await handlers.add_member(app[REGISTRY], ADMIN, "Clinique Maison")
        yield str(server.make_url("")).rstrip("/"), app[REGISTRY]
    finally:
        await server.close()


@asynccontextmanager
async def members_of(url: str, **kwargs: Any) -> AsyncIterator[RegistryMemberServers]:
    members = RegistryMemberServers(BOT_SERVER, ["static.test"], url, **kwargs)
    try:
        yield members
    finally:
        await members.aclose()


async def onboard(services: RegistryServices, server: str = NEW) -> None:
    await handlers.add_member(services, ADMIN, "Clinique Neuve")
    await handlers.add_homeserver(services, ADMIN, server, "Clinique Neuve")


async def test_member_list_follows_a_homeserver_added_then_removed(
    tmp_path: Path, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        bridge(tmp_path, store_url, in_use=False) as (url, services),
        members_of(url) as members,
    ):
        # Until the bridge answers, the configured list (and the bot's own server) is in force.
        assert members.version is None
        assert "static.test" in members and BOT_SERVER in members and NEW not in members
        with caplog.at_level(logging.INFO, logger="bot.members"):
            # A registry that never held anything (a lost database recreated empty) does not
            # cut off every member: held back, reported once.
            assert not await members.refresh()
            assert not await members.refresh()
            assert "static.test" in members and members.version is None
            held = [r for r in caplog.records if r.levelno == logging.ERROR]
            assert len(held) == 1 and "held back" in held[0].getMessage()
            first = members.version

            await onboard(services)
            assert await members.refresh()
            assert NEW in members and members.version != first
            assert may_join(f"@doc:{NEW}", members)
            assert is_member_user(f"@doc:{NEW}", members)

            await handlers.remove_homeserver(services, ADMIN, NEW)
            assert await members.refresh()
            assert NEW not in members and not may_join(f"@doc:{NEW}", members)
            assert may_join(f"@doc:{BOT_SERVER}", members)
        changes = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
        changes = [c for c in changes if "version" in c]
        assert len(changes) == 2, changes
        assert NEW in changes[0] and NEW not in changes[1]
        # Its last member removed by an admin, the registry is not "empty": that list applied.
        assert members.servers == {BOT_SERVER}


async def test_bridge_outage_keeps_the_last_good_list(
    tmp_path: Path, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with bridge(tmp_path, store_url) as (url, services):
        await onboard(services)
        members = RegistryMemberServers(BOT_SERVER, ["static.test"], url)
        assert await members.refresh()
        version = members.version
    # The bridge has stopped: the list it gave last stays in force, the config's does not return.
    try:
        with caplog.at_level(logging.WARNING, logger="bot.members"):
            for _ in range(3):
                assert not await members.refresh()
        assert NEW in members and "static.test" not in members
        assert members.version == version
        warnings = [r for r in caplog.records if r.name == "bot.members"]
        assert len(warnings) == 1  # once per outage, not at every poll
        assert "keeping the last good list" in warnings[0].getMessage()
    finally:
        await members.aclose()


@asynccontextmanager
async def scripted_bridge() -> AsyncIterator[tuple[list[web.Response], str]]:
    """A bridge whose allow-list endpoint gives the queued answers, one per request."""
    answers: list[web.Response] = []

    async def allowed(_request: web.Request) -> web.Response:
        return answers.pop(0)

    app = web.Application()
    app.router.add_get(ALLOWED_SERVERS_PATH, allowed)
    server = TestServer(app)
    await server.start_server()
    try:
        yield answers, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def test_malformed_or_failed_answers_are_ignored() -> None:
    async with scripted_bridge() as (answers, url), members_of(url) as members:
        answers.append(web.json_response({"servers": ["A.test", "b.test:8448"], "version": 7}))
        assert await members.refresh()
        assert members.servers == {"a.test", "b.test:8448", BOT_SERVER}
        assert "A.TEST" in members and "c.test" not in members and None not in members
        for bad in (
            web.json_response({"errcode": "M_UNKNOWN"}, status=500),
            web.Response(text="<html>proxy error</html>", status=200),
            web.json_response({"servers": ["ok.test", "not a server"], "version": "2"}),
            web.json_response({"servers": "a.test", "version": "2"}),
            web.json_response({"servers": [], "version": True}),
        ):
            answers.append(bad)
            assert not await members.refresh()
            assert members.servers == {"a.test", "b.test:8448", BOT_SERVER}
            assert members.version == "7"


async def test_a_peer_server_lapses_at_its_manifest_end_while_the_bridge_is_down() -> None:
    now = [1_000.0]
    async with (
        scripted_bridge() as (answers, url),
        members_of(url, clock=lambda: now[0]) as members,
    ):
        body = {"servers": ["member.test", "peer.test"], "version": "1"}
        answers.append(web.json_response(body | {"expires": {"peer.test": 2_000_000}}))
        assert await members.refresh()
        assert "peer.test" in members and "member.test" in members
        answers.append(web.json_response({"errcode": "M_UNKNOWN"}, status=502))
        assert not await members.refresh()  # the bridge is down: the last list stays ...
        assert "peer.test" in members
        now[0] = 2_000.0  # ... until the peer's manifest ends
        assert "peer.test" not in members and "member.test" in members
        assert members.servers == {"member.test", BOT_SERVER}


def test_parse_allowed_servers() -> None:
    answer = parse_answer({"servers": [" Hs.Example ", "localhost:8481"], "version": "v"})
    assert answer is not None
    assert answer.servers == {"hs.example", "localhost:8481"} and answer.version == "v"
    assert parse_answer(["a.test"]) is None
    assert parse_answer({"servers": ["a.test"]}) is None
    assert parse_answer({"servers": [1], "version": "v"}) is None


def bot_data(**changes: Any) -> dict[str, Any]:
    """A valid bot configuration with `changes` (None removes a field)."""
    data: dict[str, Any] = {
        "homeserver_url": "http://127.0.0.1:8008",
        "user_id": f"@caducee:{BOT_SERVER}",
        "password": "a real password",
        "store_dir": "store",
        "pickle_key_file": "secrets/pickle",
        "member_servers": ["static.test"],
        "bridge_url": "http://127.0.0.1:9",
        "bridge_token": SECRET,
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def bot_config(tmp_path: Path, **changes: Any) -> BotConfig:
    return parse_config(bot_data(**changes), base_dir=tmp_path)


async def test_running_bot_list_polls_the_bridge_until_its_stack_closes(
    tmp_path: Path, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with bridge(tmp_path, store_url) as (url, services):
        config = bot_config(tmp_path, bridge_url=url, follow_registry=True)
        config = config.model_copy(update={"registry_refresh_interval": 0.1})
        with caplog.at_level(logging.DEBUG):
            async with AsyncExitStack() as stack:
                members = await open_member_servers(config, stack)
                assert isinstance(members, RegistryMemberServers)
                # The bridge answered before the first sync: its list, not the configured one.
                assert "static.test" not in members and BOT_SERVER in members
                settings = CommandSettings(
                    default_ttl_seconds=60,
                    min_ttl_seconds=60,
                    max_ttl_seconds=60,
                    member_servers=members,
                )

                async def member(expected: bool) -> bool | None:
                    return True if (NEW in settings.member_servers) == expected else None

                await onboard(services)
                await eventually(lambda: member(True), timeout=10, every=0.05)
                await handlers.remove_member(services, ADMIN, "Clinique Neuve")
                await eventually(lambda: member(False), timeout=10, every=0.05)
            polls = [t for t in asyncio.all_tasks() if t.get_name() == "member servers refresh"]
            assert not polls  # stopped with the stack
        assert SECRET not in caplog.text  # the public list needs no token: none is sent


async def test_static_list_without_follow_registry(tmp_path: Path) -> None:
    config = bot_config(tmp_path)
    async with AsyncExitStack() as stack:
        assert await open_member_servers(config, stack) == {"static.test", BOT_SERVER}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"follow_registry": True, "bridge_url": None, "bridge_token": None}, "needs bridge_url"),
        ({"follow_registry": True, "registry_refresh_interval": "2h"}, "at most 1h"),
    ],
)
def test_follow_registry_config_is_checked(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        bot_config(tmp_path, **changes)


def test_follow_registry_is_opt_in(tmp_path: Path) -> None:
    config = bot_config(tmp_path, follow_registry=True, registry_refresh_interval="1m")
    assert config.follow_registry and config.registry_refresh_interval == 60
    default = bot_config(tmp_path)
    assert not default.follow_registry and default.registry_refresh_interval == 30


class InvitedClient:
    """What the router's invite handling uses of nio's client: invites and join."""

    user_id = f"@caducee:{BOT_SERVER}"

    def __init__(self) -> None:
        self.invited_rooms: dict[str, object] = {}
        self.joined: list[str] = []

    async def join(self, room_id: str) -> object:
        self.joined.append(room_id)
        self.invited_rooms.pop(room_id, None)
        return object()


def invite(client: InvitedClient, room_id: str, sender: str) -> tuple[Any, Any]:
    client.invited_rooms[room_id] = object()
    room = SimpleNamespace(room_id=room_id)
    event = SimpleNamespace(state_key=client.user_id, membership="invite", sender=sender)
    return room, event


async def test_an_invite_ignored_before_its_server_was_onboarded_is_accepted_after(
    tmp_path: Path, store_url: str
) -> None:
    """A practitioner may invite the bot between the guard's refresh and the bot's: the
    invitation is not lost, the bot joins once its list has the new homeserver."""
    async with bridge(tmp_path, store_url) as (url, services), members_of(url) as members:
        assert await members.refresh()
        client, tasks = InvitedClient(), TaskSet()
        router = EventRouter(
            client,
            cast(Any, None),
            cast(Any, None),
            member_servers=members,
            notice_interval=60,
            grace_seconds=1,
            tasks=tasks,
        )
        await router.on_invite(*invite(client, "!case:new", f"@doc:{NEW}"))
        await router.on_invite(*invite(client, "!gone:new", f"@doc:{NEW}"))
        await router.on_invite(*invite(client, "!spam:evil", "@x:evil.test"))
        # Withdrawn meanwhile: the sync brings it as a leave, which nio does not apply.
        withdrawn = SimpleNamespace(rooms=SimpleNamespace(leave={"!gone:new": object()}, join={}))
        await router.on_sync(cast(Any, withdrawn))
        assert "!gone:new" not in client.invited_rooms
        await tasks.drain(timeout=5)
        assert client.joined == []

        await onboard(services)
        assert await members.refresh()
        router.retry_pending(0)
        await tasks.drain(timeout=5)
        assert client.joined == ["!case:new"]
        router.retry_pending(0)
        await tasks.drain(timeout=5)
        assert client.joined == ["!case:new"]  # once


def test_the_bot_reads_the_allow_list_without_loading_synapse() -> None:
    """The parser is the guard's own (stdlib only): the bot must not pull Synapse in with it."""
    code = (
        "import sys, bot.members\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'synapse', 'twisted'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
