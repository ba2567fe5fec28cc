"""What the bot relies on in matrix-nio's private API, pinned against the installed nio.

`bot.matrix.nio_private` is the only place that reaches past nio's public surface; each test
here holds one behaviour it relies on, so a nio upgrade that changes one fails here, by name,
before a doctor meets it:

- `build_path` (`Api._build_path`): v3 prefix, every segment percent-encoded, a trailing empty
  segment dropped, query parameters encoded.
- `send_parsed` (`AsyncClient._send`): the token header, the answer parsed by the class given
  (a subclass stays itself) or by its error class, then applied to nio's state.
- `olm_encrypt` (`Olm._olm_encrypt`): an Olm message the recipient's nio decrypts into the
  room key it carries.
- `LeanSync` (`_handle_olm_events`, `_handle_joined_rooms`): nio still calls both from a sync,
  with the arguments the overrides read.
- `apply_invites` (`AsyncClient._handle_invited_rooms`): the invitations of a sync read outside
  nio's loop land in `invited_rooms` and reach the invite callbacks.
- The names `CaduceeClient` and `LeanSync` define shadow only the nio methods they mean to,
  and no other module of the bot reaches into another object's private attributes.

No homeserver: a loopback stand-in answers the two requests, and the Olm machines are local.
"""

from __future__ import annotations

import ast
import inspect
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    InviteMemberEvent,
    RoomCreateResponse,
    SyncResponse,
)
from nio.crypto import OlmDevice
from nio.crypto.sessions import OutboundGroupSession
from nio.events import OlmEvent, RoomKeyEvent
from nio.rooms import MatrixRoom

from bot.matrix import requests
from bot.matrix.client import CaduceeClient, RawKeysQueryResponse
from bot.matrix.nio_private import LeanSync, apply_invites, build_path, olm_encrypt, send_parsed

BOT = "@caducee:clinic.test"
DOCTOR = "@doctor:clinic.test"
TOKEN = "syt_not_a_real_token"


def offline_client(store: Path, user_id: str, device_id: str, homeserver: str = "") -> Any:
    """A logged-in `CaduceeClient` with its Olm machine, that never reached a homeserver."""
    store.mkdir(mode=0o700)
    client = CaduceeClient(
        homeserver or "http://127.0.0.1:9",
        user_id,
        device_id=device_id,
        store_path=str(store),
        config=AsyncClientConfig(encryption_enabled=True, pickle_key=secrets.token_urlsafe(24)),
    )
    client.restore_login(user_id, device_id, TOKEN)
    assert client.olm is not None
    return client


@pytest.mark.parametrize(
    ("segments", "query", "expected"),
    [
        (["createRoom"], None, "/_matrix/client/v3/createRoom"),
        (
            ["rooms", "!a/b:hs", "members"],
            {"membership": "invite"},
            "/_matrix/client/v3/rooms/%21a%2Fb%3Ahs/members?membership=invite",
        ),
        (
            ["rooms", "!r:hs", "state", "m.room.create", ""],
            {"format": "event"},
            "/_matrix/client/v3/rooms/%21r%3Ahs/state/m.room.create?format=event",
        ),
        (
            ["sendToDevice", "m.room_key.withheld", "t x"],
            None,
            "/_matrix/client/v3/sendToDevice/m.room_key.withheld/t%20x",
        ),
    ],
)
def test_build_path_encodes_every_segment_under_v3(
    segments: list[str], query: dict[str, str] | None, expected: str
) -> None:
    assert build_path(segments, query) == expected


def test_the_bots_requests_use_those_paths() -> None:
    assert requests.room_create_event("!r:hs") == (
        "GET",
        "/_matrix/client/v3/rooms/%21r%3Ahs/state/m.room.create?format=event",
        None,
    )
    method, path, body = requests.send_to_device("m.room.encrypted", {DOCTOR: {"D": {}}})
    assert (method, body) == ("PUT", {"messages": {DOCTOR: {"D": {}}}})
    first_txn = path.rsplit("/", 1)[1]
    assert path == f"/_matrix/client/v3/sendToDevice/m.room.encrypted/{first_txn}"
    assert requests.send_to_device("m.room.encrypted", {}).path != path  # a fresh transaction
    assert requests.whoami() == ("GET", "/_matrix/client/v3/account/whoami", None)
    assert requests.password_login(BOT, "pw", "Caducée").path == "/_matrix/client/v3/login"
    assert requests.keys_query([DOCTOR]) == (
        "POST",
        "/_matrix/client/v3/keys/query",
        {"device_keys": {DOCTOR: []}},
    )


class StandIn:
    """Answers ``keys/query`` with the doctor's device keys, and refuses ``createRoom``."""

    def __init__(self, device_keys: dict[str, Any]) -> None:
        self.device_keys = device_keys
        self.seen: list[tuple[str, str, str | None, Any]] = []

    def app(self) -> web.Application:
        async def keys_query(request: web.Request) -> web.Response:
            body = await request.json()
            self.seen.append(
                (request.method, request.path, request.headers.get("Authorization"), body)
            )
            return web.json_response(
                {
                    "device_keys": {DOCTOR: {self.device_keys["device_id"]: self.device_keys}},
                    "failures": {},
                    "master_keys": {DOCTOR: {"user_id": DOCTOR, "usage": ["master"]}},
                }
            )

        async def create_room(request: web.Request) -> web.Response:
            body = await request.json()
            self.seen.append(
                (request.method, request.path, request.headers.get("Authorization"), body)
            )
            return web.json_response({"errcode": "M_FORBIDDEN", "error": "not here"}, status=403)

        app = web.Application()
        app.router.add_post("/_matrix/client/v3/keys/query", keys_query)
        app.router.add_post("/_matrix/client/v3/createRoom", create_room)
        return app


@pytest_asyncio.fixture
async def doctor(tmp_path: Path) -> AsyncIterator[Any]:
    client = offline_client(tmp_path / "doctor", DOCTOR, "DOCDEVICE")
    try:
        yield client
    finally:
        await client.close()


@pytest_asyncio.fixture
async def stand_in(tmp_path: Path, doctor: Any) -> AsyncIterator[tuple[StandIn, Any]]:
    homeserver = StandIn(doctor.olm.share_keys()["device_keys"])
    server = TestServer(homeserver.app())
    await server.start_server()
    bot = offline_client(tmp_path / "bot", BOT, "BOTDEVICE", str(server.make_url("")).rstrip("/"))
    try:
        yield homeserver, bot
    finally:
        await bot.close()
        await server.close()


async def test_send_parsed_keeps_the_subclass_and_nio_applies_the_answer(
    stand_in: tuple[StandIn, Any],
) -> None:
    """`CaduceeClient.keys_query`: the raw JSON (master keys) reaches the bot, and nio's device
    store still learns the devices, because `_send` hands the answer to `receive_response`."""
    homeserver, bot = stand_in
    bot.olm.users_for_key_query.add(DOCTOR)
    raws: list[dict[str, Any]] = []
    bot.on_keys_query = raws.append
    response = await bot.keys_query()
    assert isinstance(response, RawKeysQueryResponse)
    assert raws and raws[0]["master_keys"][DOCTOR]["usage"] == ["master"]
    assert "DOCDEVICE" in bot.device_store[DOCTOR]  # nio applied it
    assert not bot.users_for_key_query
    ((method, path, auth, body),) = homeserver.seen
    assert (method, path, auth) == ("POST", "/_matrix/client/v3/keys/query", f"Bearer {TOKEN}")
    assert DOCTOR in body["device_keys"]


async def test_send_parsed_answers_a_refusal_with_the_error_class(
    stand_in: tuple[StandIn, Any],
) -> None:
    homeserver, bot = stand_in
    request = requests.create_room({"preset": "private_chat"})
    response = await send_parsed(
        bot, RoomCreateResponse, request.method, request.path, requests.body_text(request)
    )
    assert isinstance(response, ErrorResponse) and not isinstance(response, RoomCreateResponse)
    assert response.status_code == "M_FORBIDDEN"
    assert homeserver.seen == [
        ("POST", "/_matrix/client/v3/createRoom", f"Bearer {TOKEN}", {"preset": "private_chat"})
    ]


async def test_olm_encrypt_makes_a_room_key_the_recipients_nio_decrypts(
    tmp_path: Path, doctor: Any
) -> None:
    bot = offline_client(tmp_path / "bot", BOT, "BOTDEVICE")
    try:
        doctor.olm.account.generate_one_time_keys(1)
        one_time_key = next(iter(doctor.olm.account.one_time_keys["curve25519"].values()))
        keys = doctor.olm.account.identity_keys
        session = bot.olm.create_session(one_time_key, keys["curve25519"])
        device = OlmDevice(DOCTOR, "DOCDEVICE", dict(keys))
        group = OutboundGroupSession()
        key = {
            "algorithm": "m.megolm.v1.aes-sha2",
            "room_id": "!r:clinic.test",
            "session_id": group.id,
            "session_key": group.session_key,
        }
        content = olm_encrypt(bot.olm, session, device, "m.room_key", key)
        assert content["algorithm"] == "m.olm.v1.curve25519-aes-sha2"
        assert list(content["ciphertext"]) == [keys["curve25519"]]
        event = OlmEvent.from_dict({"sender": BOT, "type": "m.room.encrypted", "content": content})
        decrypted = doctor.olm.decrypt_event(event)
        assert isinstance(decrypted, RoomKeyEvent)
        assert (decrypted.room_id, decrypted.session_id) == ("!r:clinic.test", group.id)
        sender_key = bot.olm.account.identity_keys["curve25519"]
        assert doctor.olm.inbound_group_store.get("!r:clinic.test", sender_key, group.id)
    finally:
        await bot.close()


def sync_answer(one_time_keys: int, changed: list[str]) -> SyncResponse:
    answer = SyncResponse.from_dict(
        {
            "next_batch": "s2",
            "device_one_time_keys_count": {"signed_curve25519": one_time_keys},
            "device_lists": {"changed": changed, "left": []},
            "rooms": {
                "join": {
                    "!cut:clinic.test": {
                        "timeline": {"events": [], "limited": True, "prev_batch": "p1"},
                        "state": {"events": []},
                    }
                }
            },
        }
    )
    assert isinstance(answer, SyncResponse)
    return answer


async def test_a_sync_goes_through_both_lean_sync_overrides(tmp_path: Path) -> None:
    bot = offline_client(tmp_path / "bot", BOT, "BOTDEVICE")
    try:
        bot.olm.uploaded_key_count = 50
        bot.olm.tracked_users.add(DOCTOR)
        room = MatrixRoom("!cut:clinic.test", BOT)
        room.members_synced = True
        bot.rooms[room.room_id] = room
        await bot.receive_response(sync_answer(0, [DOCTOR, "@stranger:elsewhere.test"]))
        assert bot.olm.uploaded_key_count == 0  # nio's own skips a count of 0
        assert bot.olm.users_for_key_query == {DOCTOR}  # tracked users only
        assert bot.rooms[room.room_id].members_synced is False  # the cut timeline
    finally:
        await bot.close()


async def test_invitations_read_outside_the_sync_loop_reach_nio_and_its_callbacks(
    tmp_path: Path,
) -> None:
    bot = offline_client(tmp_path / "bot", BOT, "BOTDEVICE")
    seen: list[tuple[str, str]] = []

    async def on_invite(room: Any, event: Any) -> None:
        seen.append((room.room_id, event.sender))

    bot.add_event_callback(on_invite, InviteMemberEvent)
    member = {"type": "m.room.member", "state_key": BOT, "sender": DOCTOR}
    try:
        answer = SyncResponse.from_dict(
            {
                "next_batch": "s1",
                "rooms": {
                    "invite": {
                        "!case:clinic.test": {
                            "invite_state": {
                                "events": [{**member, "content": {"membership": "invite"}}]
                            }
                        }
                    }
                },
            }
        )
        assert isinstance(answer, SyncResponse)
        await apply_invites(bot, answer)
        assert "!case:clinic.test" in bot.invited_rooms
        assert seen == [("!case:clinic.test", DOCTOR)]
        assert bot.next_batch != "s1"  # only the invitations were applied, not the position
    finally:
        await bot.close()


def test_the_overridden_sync_steps_still_have_the_shape_the_overrides_assume() -> None:
    olm_events = AsyncClient._handle_olm_events
    joined = AsyncClient._handle_joined_rooms
    assert not inspect.iscoroutinefunction(olm_events)
    assert inspect.iscoroutinefunction(joined)
    for step in (olm_events, joined):
        assert list(inspect.signature(step).parameters) == ["self", "response"]


def test_our_names_shadow_only_the_nio_methods_we_mean_to_override() -> None:
    nio_names = set(dir(AsyncClient("http://127.0.0.1:9", BOT)))  # its instance attributes too
    ours = set(vars(CaduceeClient)) | set(vars(LeanSync))
    dunder = {n for n in ours if n.startswith("__")}
    overridden = (ours - dunder) & nio_names
    assert overridden == {
        "send",
        "room_send",
        "share_group_session",
        "keys_query",
        "_handle_olm_events",
        "_handle_joined_rooms",
    }
    # Nor are the attributes `CaduceeClient.__init__` sets.
    assert not {"on_keys_query", "gate", "_claimed_at"} & nio_names


CHECKOUT = Path(__file__).resolve().parents[1]
ALLOWED = CHECKOUT / "bot" / "matrix" / "nio_private.py"


def private_reaches(source: str) -> list[str]:
    """``x._name`` where ``x`` is not ``self`` or ``cls`` (``super()._name`` counts)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_only_nio_private_reaches_into_private_attributes() -> None:
    offending = {
        str(path.relative_to(CHECKOUT)): reaches
        for path in sorted((CHECKOUT / "bot").rglob("*.py"))
        if path != ALLOWED and (reaches := private_reaches(path.read_text()))
    }
    assert offending == {}
    assert len(private_reaches(ALLOWED.read_text())) == 5  # the scan sees the five it holds


def test_the_private_reach_scan_sees_each_form() -> None:
    source = "a._b\nself._c\nsuper()._d(x)\nApi._e([])\nx.__class__\ncls._f\n"
    assert private_reaches(source) == ["1: a._b", "3: super()._d", "4: Api._e"]
