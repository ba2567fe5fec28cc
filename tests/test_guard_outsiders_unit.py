"""Synapse's federation whitelist follows the guard's allow-list (pure parts and the binding).

The effect on real Synapse (every channel, both directions, live) is in
`tests/test_outsiders_synapse.py`; here, the bookkeeping and the fail-closed start.
"""

from __future__ import annotations

from types import SimpleNamespace
from unittest.mock import Mock

import pytest
from synapse.module_api import ModuleApi
from synapse.module_api.errors import ConfigError

from bridge.guard import CaduceeGuard
from bridge.guard.allowlist import AllowList, AllowListHolder
from bridge.guard.outsiders import FederationWhitelist, whitelist_changes

OWN, B, C = "localhost:8481", "localhost:8482", "localhost:8483"


def module_api(server_name: str, whitelist: dict[str, bool] | None = None) -> Mock:
    """A spec'd ModuleApi with the place where Synapse keeps its federation whitelist."""
    api = Mock(spec=ModuleApi)
    api.server_name = server_name
    federation = SimpleNamespace(federation_domain_whitelist=whitelist)
    api._hs = SimpleNamespace(config=SimpleNamespace(federation=federation))
    return api


def whitelist_of(api: Mock) -> object:
    return api._hs.config.federation.federation_domain_whitelist


def test_changes_are_exactly_the_difference() -> None:
    assert whitelist_changes({OWN, B}, {OWN, C}) == ({C}, {B})
    assert whitelist_changes({OWN}, {OWN}) == (frozenset(), frozenset())
    assert whitelist_changes(set(), {OWN}) == ({OWN}, frozenset())


def test_the_guard_installs_a_whitelist_when_synapse_has_none() -> None:
    api = module_api(OWN)
    CaduceeGuard(CaduceeGuard.parse_config({"allowed_servers": [B]}), api)
    assert whitelist_of(api) == {OWN: True, B: True}


def test_the_guard_replaces_a_static_whitelist_in_place() -> None:
    """Synapse's readers hold this very dict: it must be mutated, never swapped."""
    table = {OWN: True, C: True}
    api = module_api(OWN, table)
    guard = CaduceeGuard(CaduceeGuard.parse_config({"allowed_servers": [B]}), api)
    assert whitelist_of(api) is table
    assert table == {OWN: True, B: True}
    guard.allow_list.replace([C])
    assert whitelist_of(api) is table
    assert table == {OWN: True, C: True}
    guard.allow_list.replace([])
    assert table == {OWN: True}, "an empty registry leaves only the server itself"


def test_every_list_the_refresher_installs_reaches_synapse() -> None:
    holder = AllowListHolder(AllowList.build(OWN, [B]))
    table: dict[str, bool] = {}
    api = module_api(OWN, table)
    holder.subscribe(FederationWhitelist.bind(api).apply)
    assert set(table) == {OWN, B}
    holder.replace([B, C])
    assert set(table) == {OWN, B, C}
    holder.replace(["LOCALHOST:8483"])
    assert set(table) == {OWN, C}, "names are compared as the allow-list normalises them"


@pytest.mark.parametrize(
    "hs",
    [
        None,
        SimpleNamespace(config=None),
        SimpleNamespace(config=SimpleNamespace(federation=SimpleNamespace())),
        SimpleNamespace(
            config=SimpleNamespace(federation=SimpleNamespace(federation_domain_whitelist=[OWN]))
        ),
    ],
    ids=["no-homeserver", "no-config", "no-whitelist-attribute", "not-a-mapping"],
)
def test_a_synapse_that_moved_its_whitelist_refuses_to_start(hs: object) -> None:
    """Fail closed: a Synapse upgrade must not silently reopen federation to everyone."""
    api = Mock(spec=ModuleApi)
    api.server_name = OWN
    api._hs = hs
    with pytest.raises(ConfigError, match="refusing to start"):
        CaduceeGuard(CaduceeGuard.parse_config({"allowed_servers": [B]}), api)
