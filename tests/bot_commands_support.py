"""Support for the bot command tests: an in-memory Matrix, store URLs on SQLite and
PostgreSQL, and a directory served over HTTP.

The fake is the *Matrix side* (what the nio shell does); the commands, the store and the
HTTP directory client under test are the real ones. The module holds no tests itself.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from bot.commands.context import CreationRefused, MatrixActionError
from bot.ids import EventId, RoomId, UserId, server_of

DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


@dataclass
class FakeRoom:
    room_id: RoomId
    body: dict[str, Any]
    joined: set[UserId] = field(default_factory=set)
    invited: set[UserId] = field(default_factory=set)
    power: dict[str, int] = field(default_factory=dict)
    state: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


@dataclass
class Notice:
    room_id: RoomId
    body: str
    html: str | None


class FakeMatrix:
    """Rooms, memberships, power levels and notices in memory, with Matrix's refusals.

    ``refuse_invites`` maps a user to the error the homeserver would give (unknown user,
    server refused...). ``calls`` records every action in order, so tests can check what
    happened and in which order.
    """

    def __init__(self, user_id: str = "@caducee:hs-a.test", server_name: str = "hs-a.test"):
        self._user_id = UserId(user_id)
        self._server_name = server_name
        self.rooms: dict[RoomId, FakeRoom] = {}
        self.notices: list[Notice] = []
        self.calls: list[tuple[str, ...]] = []
        self.refuse_invites: dict[str, str] = {}
        self.fail_create: str | None = None
        # A /createRoom naming invitees refused before any room exists (a guard's check of
        # the request), as (message, request_over); request_over False: a 5xx.
        self.refuse_creation_with_invites: tuple[str, bool] | None = None
        self.fail_kick: str | None = None
        self._n = 0

    @property
    def user_id(self) -> UserId:
        return self._user_id

    @property
    def server_name(self) -> str:
        return self._server_name

    def _next(self, sigil: str) -> str:
        self._n += 1
        return f"{sigil}{self._n:06d}x:{self._server_name}"

    def _room(self, room_id: RoomId) -> FakeRoom:
        room = self.rooms.get(room_id)
        if room is None or self.user_id not in room.joined:
            raise MatrixActionError("the bot is not in this room")
        return room

    def add_room(self, members: list[str], power: dict[str, int] | None = None) -> RoomId:
        """A room the bot is in that it did not create (a DM, an ordinary group room)."""
        room_id = RoomId(self._next("!"))
        self.rooms[room_id] = FakeRoom(
            room_id, {}, joined={UserId(m) for m in members} | {self.user_id}, power=power or {}
        )
        return room_id

    def join(self, room_id: RoomId, user_id: str) -> None:
        room = self.rooms[room_id]
        room.invited.discard(UserId(user_id))
        room.joined.add(UserId(user_id))

    def notices_in(self, room_id: RoomId) -> list[str]:
        return [n.body for n in self.notices if n.room_id == room_id]

    async def send_notice(self, room_id: RoomId, body: str, html: str | None = None) -> EventId:
        self._room(room_id)
        self.calls.append(("send_notice", room_id))
        self.notices.append(Notice(room_id, body, html))
        return EventId(self._next("$"))

    async def create_room(self, body: dict[str, Any]) -> RoomId:
        if self.fail_create is not None:
            raise MatrixActionError(self.fail_create)
        override = body.get("power_level_content_override", {})
        if body.get("room_version") == "12" and self.user_id in override.get("users", {}):
            # What Synapse answers (400) for room version 12.
            raise MatrixActionError(f"Creator user {self.user_id} must not appear in content.users")
        if body.get("invite") and self.refuse_creation_with_invites is not None:
            message, request_over = self.refuse_creation_with_invites
            self.calls.append(("create_room refused",))
            raise CreationRefused(message, request_over=request_over)
        room_id = RoomId(self._next("!"))
        self.calls.append(("create_room", room_id))
        room = FakeRoom(room_id, body, joined={self.user_id}, power=dict(override.get("users", {})))
        for event in body.get("initial_state", []):
            room.state[(event["type"], event.get("state_key", ""))] = event["content"]
        self.rooms[room_id] = room
        # As Synapse: the room first, then each invitation in turn; the first refused one
        # fails the request, the room and the invitations before it stay.
        for user_id in body.get("invite", []):
            try:
                await self.invite(room_id, UserId(user_id))
            except MatrixActionError as exc:
                raise CreationRefused(exc.message, request_over=True, room_id=room_id) from exc
        return room_id

    async def invite(self, room_id: RoomId, user_id: UserId) -> None:
        room = self._room(room_id)
        self.calls.append(("invite", room_id, user_id))
        if user_id in self.refuse_invites:
            raise MatrixActionError(self.refuse_invites[user_id])
        if user_id in room.joined:
            raise MatrixActionError(f"{user_id} is already in the room")
        room.invited.add(user_id)

    async def kick(self, room_id: RoomId, user_id: UserId, reason: str) -> None:
        room = self._room(room_id)
        self.calls.append(("kick", room_id, user_id))
        if self.fail_kick is not None:
            raise MatrixActionError(self.fail_kick)
        if user_id not in room.joined and user_id not in room.invited:
            raise MatrixActionError(f"{user_id} is not in the room")
        room.joined.discard(user_id)
        room.invited.discard(user_id)

    async def leave(self, room_id: RoomId) -> None:
        room = self._room(room_id)
        self.calls.append(("leave", room_id))
        room.joined.discard(self.user_id)

    async def joined_members(self, room_id: RoomId) -> list[UserId]:
        return sorted(self._room(room_id).joined)

    async def invited_members(self, room_id: RoomId) -> list[UserId]:
        return sorted(self._room(room_id).invited)

    async def power_level(self, room_id: RoomId, user_id: UserId) -> int:
        return self._room(room_id).power.get(user_id, 0)

    async def put_state(
        self, room_id: RoomId, event_type: str, content: dict[str, Any], state_key: str = ""
    ) -> EventId:
        self._room(room_id).state[(event_type, state_key)] = content
        return EventId(self._next("$"))


def member_of(user_id: str) -> str:
    return server_of(user_id)


# -- database URLs -----------------------------------------------------------------------


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'bot.db'}"


def postgres_admin_url() -> str:
    return os.environ.get("CADUCEE_TEST_POSTGRES_URL", DEFAULT_PG_URL)


async def fresh_postgres_database() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database for one test (dropped after); skips if none answers."""
    import asyncpg

    admin = make_url(postgres_admin_url()).set(drivername="postgresql")
    dsn = admin.render_as_string(hide_password=False)
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.skip(f"PostgreSQL not reachable at {admin.host}:{admin.port} ({exc!r})")
    name = f"caducee_bot_{uuid.uuid4().hex[:12]}"
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield admin.set(drivername="postgresql+asyncpg", database=name).render_as_string(
                hide_password=False
            )
        finally:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


# -- the directory: the real bridge over a small register ---------------------------------

DIRECTORY_TOKEN = "bot-" + "t" * 40
DEMO_EXTRACT = (
    Path(__file__).resolve().parent.parent
    / "deploy/local/demo/PS_LibreAcces_Personne_activite_demo.txt"
)
SPECIALTIES = {
    "Cardiologie et maladies vasculaires": "SM04",
    "Médecine générale": "SM54",
    "Pédiatrie": "SM40",
}


@dataclass(frozen=True)
class Entry:
    """One practitioner of the test register, and their Matrix account if onboarded."""

    rpps: str
    last_name: str
    first_name: str
    specialty: str = "Médecine générale"
    city: str = "Lyon"
    postcode: str = "69003"
    department: tuple[str, str] = ("69", "Rhône")
    matrix_id: str | None = None
    visible: bool = True


def write_extract(path: Path, entries: list[Entry]) -> Path:
    """An RPPS extract in the real layout: the demo's header, one line per entry.

    Each line is the demo's first line with the entry's identity, specialty and place.
    """
    header, template = DEMO_EXTRACT.read_text(encoding="utf-8").splitlines()[:2]
    index = {name: i for i, name in enumerate(header.split("|"))}
    lines = [header]
    for e in entries:
        fields = template.split("|")
        values = {
            "Identifiant PP": e.rpps,
            "Identification nationale PP": "8" + e.rpps,
            "Nom d'exercice": e.last_name,
            "Prénom d'exercice": e.first_name,
            "Code savoir-faire": SPECIALTIES[e.specialty],
            "Libellé savoir-faire": e.specialty,
            "Raison sociale site": "",
            "Bureau cedex (coord. structure)": "",
            "Code postal (coord. structure)": e.postcode,
            "Code commune (coord. structure)": "",
            "Libellé commune (coord. structure)": e.city,
            "Code Département (structure)": e.department[0],
            "Libellé Département (structure)": e.department[1],
        }
        for name, value in values.items():
            fields[index[name]] = value
        lines.append("|".join(fields))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@asynccontextmanager
async def running_bridge(tmp_path: Path, entries: list[Entry]) -> AsyncIterator[str]:
    """The bridge's own app (`bridge.http.create_app`) on a loopback port, its directory
    imported by its importer from ``entries`` and Matrix IDs linked as onboarding does.
    Yields the base URL; the bot's token is `DIRECTORY_TOKEN`."""
    from aiohttp.test_utils import TestServer

    from bridge.config import parse_config
    from bridge.db import open_database
    from bridge.directory.importer import import_directory
    from bridge.directory.store import link_matrix_id
    from bridge.http.app import create_app

    config = parse_config(
        {
            "server_name": "hs-a.test",
            "homeserver_url": "http://127.0.0.1:9",
            "data_dir": str(tmp_path / "bridge"),
            "service_tokens": [{"name": "bot", "token": DIRECTORY_TOKEN}],
        },
        source="test bridge config",
        base_dir=tmp_path,
    )
    db = await open_database(config.effective_database_url, create=True)
    try:
        await import_directory(db, write_extract(tmp_path / "extract.txt", entries))
        async with db.sessions.begin() as session:
            for e in entries:
                if e.matrix_id is not None:
                    await link_matrix_id(session, e.rpps, e.matrix_id, visible=e.visible)
    finally:
        await db.close()
    server = TestServer(create_app(config, create_database=True))
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()
