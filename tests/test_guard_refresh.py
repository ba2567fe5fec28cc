"""The guard's live allow-list: answers parsed strictly, the last good list kept otherwise.

Synapse's ModuleApi is a spec'd mock (the host); its HTTP client answers what each test
says. The same refresher against a real bridge and real Synapse is in
test_registry_federation.py.
"""

from __future__ import annotations

import asyncio
from typing import Any
from unittest.mock import AsyncMock, Mock

import pytest
from synapse.module_api import ModuleApi
from synapse.module_api.errors import ConfigError

from bridge.guard import CaduceeGuard
from bridge.guard.allowlist import AllowList, AllowListHolder, parse_answer
from bridge.guard.refresh import AllowListRefresher
from tests.test_guard_outsiders_unit import module_api

OWN, B, C = "localhost:8481", "localhost:8482", "localhost:8483"
URL = "http://127.0.0.1:8780/_caducee/v1/federation/allowed_servers"


def api_answering(*answers: object) -> Mock:
    """A ModuleApi whose get_json returns (or raises) each answer in turn."""
    api = Mock(spec=ModuleApi)
    api.server_name = OWN
    api.http_client = Mock()
    api.http_client.get_json = AsyncMock(side_effect=list(answers))
    return api


def refresher(api: Mock, initial: tuple[str, ...] = (B,)) -> AllowListRefresher:
    return AllowListRefresher(api, AllowListHolder(AllowList.build(OWN, initial)), URL, 1.0)


def servers(r: AllowListRefresher) -> set[str]:
    return set(r._holder.current.servers)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"servers": ["LocalHost:8482", "hs.example"], "version": "v1"}, {B, "hs.example"}),
        ({"servers": [], "version": 3}, set()),
    ],
)
def test_a_well_formed_answer_is_read(body: object, expected: set[str]) -> None:
    answer = parse_answer(body)
    assert answer is not None
    assert answer.servers == expected


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "localhost:8482",
        {"servers": [B]},
        {"version": "1"},
        {"servers": B, "version": "1"},
        {"servers": [B, "not a server!"], "version": "1"},
        {"servers": [B, 7], "version": "1"},
        {"servers": [B], "version": True},
        {"servers": [B], "version": None},
        {"errcode": "M_UNKNOWN", "error": "Internal server error"},
    ],
)
def test_anything_else_is_not_an_allow_list(body: object) -> None:
    assert parse_answer(body) is None


async def test_an_answer_replaces_the_list_and_the_own_server_stays() -> None:
    r = refresher(api_answering({"servers": [C], "version": "2"}))
    await r.refresh()
    assert servers(r) == {OWN, C}
    assert r.version == "2"


async def test_the_last_good_list_stays_when_the_bridge_fails_or_answers_garbage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = api_answering(
        {"servers": [C], "version": "2"},
        ConnectionRefusedError(),
        {"servers": "everyone", "version": "3"},
        ValueError("not JSON"),
        {"servers": [], "version": "4"},
    )
    r = refresher(api)
    await r.refresh()
    for _ in range(3):
        await r.refresh()
        assert servers(r) == {OWN, C}
        assert r.version == "2"
    warnings = [rec for rec in caplog.records if "keeping the last good list" in rec.message]
    assert len(warnings) == 1, "a lasting outage is logged once, not at every refresh"
    await r.refresh()
    assert servers(r) == {OWN}
    assert r.version == "4"
    assert any("readable again" in rec.message for rec in caplog.records)


async def test_a_peer_s_servers_leave_at_their_manifest_s_end_while_the_bridge_is_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The bridge is down for days: its last list must not keep an expired peer in."""
    now = [1_000.0]
    answer = {"servers": [B, C], "version": "7", "expires": {C: 2_000_000}}
    api = api_answering(answer, answer, ConnectionRefusedError(), TimeoutError(), answer)
    r = AllowListRefresher(api, AllowListHolder(AllowList.build(OWN, ())), URL, 1.0, lambda: now[0])
    await r.refresh()
    assert servers(r) == {OWN, B, C}
    now[0] = 1_999.0
    await r.refresh()  # the same list again; C still valid for a second
    await r.refresh()  # the bridge is down, C still valid
    assert servers(r) == {OWN, B, C}
    now[0] = 2_000.0
    await r.refresh()  # still down: C's manifest ended, B (a member) stays
    assert servers(r) == {OWN, B}
    assert any("expired while the federation bridge" in rec.message for rec in caplog.records)
    await r.refresh()  # the bridge is back but still lists C with the old end: not let in
    assert servers(r) == {OWN, B}


@pytest.mark.parametrize(
    "expires",
    [[], {"localhost:8499": 5}, {C: "soon"}, {C: True}, {C: 1.5}],
    ids=["not-a-map", "unlisted-server", "string", "bool", "float"],
)
def test_a_malformed_expiry_makes_the_answer_unreadable(expires: object) -> None:
    assert parse_answer({"servers": [C], "version": "1", "expires": expires}) is None


async def test_an_empty_registry_never_cuts_off_every_member(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bridge on a lost database recreated empty answers only our own server: held back,
    reported once; an empty registry that keeps a member, or a used registry, applies."""
    empty = {"servers": [OWN], "version": "e", "registry_empty": True}
    r = refresher(api_answering(empty, empty), initial=(B, C))
    await r.refresh()
    await r.refresh()
    assert servers(r) == {OWN, B, C} and r.version is None
    errors = [rec for rec in caplog.records if rec.levelname == "ERROR"]
    assert len(errors) == 1 and "held back" in errors[0].message
    assert "localhost:8482, localhost:8483" in errors[0].message

    keeps_one = {"servers": [C], "version": "k", "registry_empty": True}
    r = refresher(api_answering(keeps_one), initial=(B, C))
    await r.refresh()
    assert servers(r) == {OWN, C}

    removed_by_an_admin = {"servers": [], "version": "r", "registry_empty": False}
    r = refresher(api_answering(removed_by_an_admin), initial=(B, C))
    await r.refresh()
    assert servers(r) == {OWN}


@pytest.mark.parametrize("flag", ["yes", 1, None])
def test_a_registry_empty_flag_that_is_not_a_boolean_is_not_an_answer(flag: object) -> None:
    assert parse_answer({"servers": [], "version": "1", "registry_empty": flag}) is None


async def test_the_configured_list_stays_until_the_bridge_first_answers() -> None:
    r = refresher(api_answering(TimeoutError()), initial=(B, C))
    await r.refresh()
    assert servers(r) == {OWN, B, C}
    assert r.version is None


async def test_a_slow_bridge_does_not_pile_up_refreshes() -> None:
    release = asyncio.Event()
    calls = 0

    async def slow(url: str) -> Any:
        nonlocal calls
        calls += 1
        await release.wait()
        return {"servers": [C], "version": "9"}

    api = api_answering()
    api.http_client.get_json = slow
    r = refresher(api)
    first = asyncio.create_task(r.refresh())
    await asyncio.sleep(0)
    await r.refresh()  # due while the first waits: skipped
    release.set()
    await first
    assert calls == 1
    assert servers(r) == {OWN, C}


def test_the_guard_polls_on_every_worker_when_a_url_is_configured() -> None:
    api = module_api(OWN)
    config = CaduceeGuard.parse_config(
        {"allowed_servers": [B], "allowed_servers_url": URL, "refresh_seconds": 1}
    )
    guard = CaduceeGuard(config, api)
    assert guard.refresher is not None
    api.looping_background_call.assert_called_once()
    args, kwargs = api.looping_background_call.call_args
    assert args == (guard.refresher.refresh, 1000.0)
    assert kwargs["run_on_all_instances"] is True
    delayed_args, _ = api.delayed_background_call.call_args
    assert delayed_args == (0, guard.refresher.refresh)


def test_without_a_url_nothing_is_polled() -> None:
    api = module_api(OWN)
    guard = CaduceeGuard(CaduceeGuard.parse_config({"allowed_servers": [B]}), api)
    assert guard.refresher is None
    api.looping_background_call.assert_not_called()


def test_refresh_seconds_defaults_to_30() -> None:
    config = CaduceeGuard.parse_config({"allowed_servers": [], "allowed_servers_url": URL})
    assert config.refresh_seconds == 30.0


@pytest.mark.parametrize("value", [0, -1, "30", True, 3601, None])
def test_a_bad_refresh_interval_is_refused_naming_the_key(value: object) -> None:
    with pytest.raises(ConfigError, match="refresh_seconds"):
        CaduceeGuard.parse_config(
            {"allowed_servers": [], "allowed_servers_url": URL, "refresh_seconds": value}
        )
