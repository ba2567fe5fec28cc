"""The case-room body against real homeservers running the guard: Synapse accepts it as
built, the room's state is what the commands promise, and the guard and the bot's label
check agree."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from bot.commands.policy import check_label
from bot.commands.rooms import build_case_room_body
from bot.expiry.policy import PURGE_MARGIN_MS
from bot.ids import UserId
from bridge.guard.identifiers import find_patient_identifier
from deploy.local.federation import Homeserver
from tests.matrix_helpers import unique

pytestmark = pytest.mark.slow


async def _call(
    hs: Homeserver, token: str, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            f"{hs.client_url}/_matrix/client/v3{path}",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        ) as resp,
    ):
        payload = await resp.json()
        return resp.status, payload if isinstance(payload, dict) else {"list": payload}


async def test_case_room_body_is_accepted_and_yields_the_promised_state(
    hs_a: Homeserver, hs_b: Homeserver, hs_c: Homeserver
) -> None:
    bot = await hs_a.register_user(unique("bot"), secrets.token_urlsafe(12))
    requester = await hs_b.register_user(unique("req"), secrets.token_urlsafe(12))
    outsider = await hs_c.register_user(unique("out"), secrets.token_urlsafe(12))
    body = build_case_room_body(
        label=check_label("genou droit 72", find_patient_identifier),
        requester=UserId(requester.user_id),
        bot=UserId(bot.user_id),
        ttl_seconds=3600,
        invite=[UserId(requester.user_id)],
    )
    status, created = await _call(hs_a, bot.access_token, "POST", "/createRoom", body)
    assert status == 200, created
    room = quote(created["room_id"])
    status, state = await _call(hs_a, bot.access_token, "GET", f"/rooms/{room}/state")
    assert status == 200
    by_type = {(e["type"], e["state_key"]): e["content"] for e in state["list"]}
    assert by_type[("m.room.encryption", "")]["algorithm"] == "m.megolm.v1.aes-sha2"
    assert by_type[("m.room.join_rules", "")] == {"join_rule": "invite"}
    assert by_type[("m.room.history_visibility", "")] == {"history_visibility": "invited"}
    assert by_type[("m.room.guest_access", "")] == {"guest_access": "forbidden"}
    assert by_type[("m.room.retention", "")] == {"max_lifetime": 3_600_000 + PURGE_MARGIN_MS}
    assert by_type[("m.room.name", "")] == {"name": "Cas · genou droit 72"}
    power = by_type[("m.room.power_levels", "")]
    # Room version 12: the bot, creator, has unlimited power without being listed.
    assert power["users"] == {requester.user_id: 100}
    assert by_type[("m.room.create", "")]["room_version"] == "12"
    assert power.get("users_default", 0) == 0
    assert power["invite"] == 50
    assert by_type[("m.room.member", requester.user_id)]["membership"] == "invite"

    # The requester joins (over federation); plain members cannot invite; the bot, creator,
    # can remove the requester at close although both have "full" power.
    status, _ = await _call(hs_b, requester.access_token, "POST", f"/rooms/{room}/join", {})
    assert status == 200
    colleague = await hs_a.register_user(unique("col"), secrets.token_urlsafe(12))
    status, _ = await _call(
        hs_a, bot.access_token, "POST", f"/rooms/{room}/invite", {"user_id": colleague.user_id}
    )
    assert status == 200
    status, _ = await _call(hs_a, colleague.access_token, "POST", f"/rooms/{room}/join", {})
    assert status == 200
    status, _ = await _call(
        hs_a,
        colleague.access_token,
        "POST",
        f"/rooms/{room}/invite",
        {"user_id": (await hs_a.register_user(unique("x"), "pw-" + unique("p"))).user_id},
    )
    assert status == 403
    status, kicked = await _call(
        hs_a,
        bot.access_token,
        "POST",
        f"/rooms/{room}/kick",
        {"user_id": requester.user_id, "reason": "Dossier clos / Case closed"},
    )
    assert status == 200, kicked

    # Invitees outside the member servers are refused by the homeservers as well.
    status, _ = await _call(
        hs_a, bot.access_token, "POST", f"/rooms/{room}/invite", {"user_id": outsider.user_id}
    )
    assert status == 403


async def test_guard_and_bot_refuse_the_same_patient_identifier(hs_a: Homeserver) -> None:
    bot = await hs_a.register_user(unique("bot"), secrets.token_urlsafe(12))
    nir13 = "2690299341732"
    label = f"patient {nir13}{97 - int(nir13) % 97:02d}"
    assert find_patient_identifier(label) is not None  # the bot refuses it ...
    body = build_case_room_body(
        label=label, requester=UserId(bot.user_id), bot=UserId(bot.user_id), ttl_seconds=3600
    )
    status, refused = await _call(hs_a, bot.access_token, "POST", "/createRoom", body)
    assert status == 403, refused  # ... and so does the homeserver, had the bot not
