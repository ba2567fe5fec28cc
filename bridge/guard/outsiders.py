"""No path to or from servers outside the federation: Synapse's own federation whitelist,
kept equal to the guard's live allow-list.

Why this mechanism (Synapse 1.163, read in its source):

- Most federation traffic reaches no module hook at all: profile and directory queries,
  device lists (`/user/devices`), key queries and one-time-key claims, to-device messages
  and other EDUs in `/send` transactions, backfill, `/state`, `/event`, media, and on the
  way out a server admin's join through a `via` server or to a version-12 room id that
  names no server. A rule per channel would leave the next channel open.
- One check does cover every channel, in both directions: `federation_domain_whitelist`.
  Inbound, `Authenticator.authenticate_request` refuses any X-Matrix origin off the list
  before a servlet runs (and before the signature is even checked), for every
  authenticated federation endpoint. Outbound, `MatrixFederationHttpClient._send_request`
  refuses any destination off the list before a connection is attempted (and before the
  retry limiter, so a refused destination is not backed off when it is allowed again);
  the federation sender drops transactions to such destinations. Every reader holds the
  *same* dict, `hs.config.federation.federation_domain_whitelist`, or reads it anew.
- The setting is read once at start. Rendering it from the registry would need a restart
  on every registry change. Instead the guard updates that dict *in place* whenever its
  allow-list changes (the bridge is polled every `refresh_seconds`), in every Synapse
  process, workers included: each process has its own guard and its own dict.

The one step outside Synapse's public module API is reaching that dict
(`ModuleApi._hs.config.federation`): Synapse offers no public hook on federation origins
or destinations. `bind` checks the shape it relies on and raises at start when it is not
there, so a Synapse upgrade that moves it stops the homeserver instead of silently
opening it; `tests/test_outsiders_synapse.py` proves the effect on real Synapse.

When homeserver.yaml has no `federation_domain_whitelist`, `bind` installs an empty one
(filled at once from the allow-list). Modules are instantiated before the listeners
start, so the inbound `Authenticator` is built with it; the outbound client reads the
config on every request.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from synapse.module_api import ModuleApi
from synapse.module_api.errors import ConfigError

from bridge.guard.allowlist import AllowList

logger = logging.getLogger(__name__)


def whitelist_changes(
    current: Collection[str], wanted: Collection[str]
) -> tuple[frozenset[str], frozenset[str]]:
    """What to add to and remove from Synapse's whitelist so that it equals `wanted`."""
    now, target = frozenset(current), frozenset(wanted)
    return target - now, now - target


class FederationWhitelist:
    """Synapse's federation whitelist of this process, updated in place."""

    def __init__(self, table: dict[str, bool]) -> None:
        self._table = table

    @classmethod
    def bind(cls, api: ModuleApi) -> FederationWhitelist:
        """The whitelist of the Synapse process running `api`; raise ConfigError if absent."""
        federation: Any = getattr(
            getattr(getattr(api, "_hs", None), "config", None), "federation", None
        )
        if federation is None or not hasattr(federation, "federation_domain_whitelist"):
            raise ConfigError(
                "Caducée guard: this Synapse does not keep its federation whitelist where "
                "the guard expects it (config.federation.federation_domain_whitelist); "
                "refusing to start rather than federate with anyone"
            )
        table = federation.federation_domain_whitelist
        if table is None:
            table = {}
            federation.federation_domain_whitelist = table
        if not isinstance(table, dict):
            raise ConfigError(
                "Caducée guard: Synapse's federation_domain_whitelist is not the mapping the "
                "guard expects; refusing to start rather than federate with anyone"
            )
        return cls(table)

    @property
    def servers(self) -> frozenset[str]:
        return frozenset(self._table)

    def apply(self, allow: AllowList) -> None:
        """Make Synapse federate with exactly the servers of `allow` (the own one included).

        Synchronous, in Synapse's reactor thread: no request sees a half-updated table.
        """
        added, removed = whitelist_changes(self._table, allow.servers)
        for server in removed:
            del self._table[server]
        for server in added:
            self._table[server] = True
        if added or removed:
            logger.info(
                "Federation whitelist now %d server(s); added %s, removed %s",
                len(self._table),
                sorted(added),
                sorted(removed),
            )
