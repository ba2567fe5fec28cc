"""The set of homeservers this federation trusts, and a holder a refresher can swap.

Matrix server names include the port when it is not the default ("localhost:8481"),
and two ports on one host are two different servers, so names are compared exactly
(host lower-cased). The homeserver's own name is always on the list: a member must be
able to talk to itself even if the registry forgets it.

Today the list comes from the module's configuration; later the federation registry
feeds it live. `AllowListHolder.replace` is the seam for that: callbacks read
`holder.current` on every decision, so a swap takes effect at once and atomically.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

# host: DNS name, IPv4 literal or bracketed IPv6 literal; optional :port.
_SERVER_NAME = re.compile(
    r"^(?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9](?:[A-Za-z0-9\-.]{0,253}[A-Za-z0-9])?)"
    r"(?::[0-9]{1,5})?$"
)


def normalise_server_name(name: str) -> str:
    """Lower-case the name: DNS is case-insensitive and ports are digits."""
    return name.strip().lower()


def is_valid_server_name(name: str) -> bool:
    """Whether ``name`` is a syntactically valid Matrix server name (host[:port])."""
    if not _SERVER_NAME.match(name):
        return False
    port = name.rpartition("]")[2] if name.startswith("[") else name.partition(":")[2]
    port = port.lstrip(":")
    return not port or 0 < int(port) < 65536


def server_of(matrix_id: str) -> str | None:
    """The server part of a user id, room alias or (pre-v12) room id, or None.

    "@alice:localhost:8481" -> "localhost:8481". Room ids of room version 12 are
    hashes without a server part; they give None.
    """
    _, sep, server = matrix_id.partition(":")
    if not sep or not server:
        return None
    return normalise_server_name(server)


@dataclass(frozen=True)
class AllowList:
    """An immutable snapshot of the servers allowed to federate with us."""

    own_server: str
    servers: frozenset[str]

    @classmethod
    def build(cls, own_server: str, servers: Iterable[str]) -> AllowList:
        own = normalise_server_name(own_server)
        return cls(own, frozenset(normalise_server_name(s) for s in servers) | {own})

    def allows(self, server: str | None) -> bool:
        """Whether ``server`` may take part; an unknown server (None) may not."""
        return server is not None and normalise_server_name(server) in self.servers

    def allows_user(self, user_id: str) -> bool:
        return self.allows(server_of(user_id))


class AllowListHolder:
    """The current allow-list, replaceable as a whole by a future live refresher."""

    def __init__(self, initial: AllowList) -> None:
        self._current = initial

    @property
    def current(self) -> AllowList:
        return self._current

    def replace(self, servers: Iterable[str]) -> AllowList:
        """Install a new list (the own server is kept) and return it."""
        self._current = AllowList.build(self._current.own_server, servers)
        return self._current


MAX_SERVERS: Final = 100_000


@dataclass(frozen=True)
class Answer:
    """A well-formed answer of the bridge."""

    servers: frozenset[str]
    version: str
    registry_empty: bool = False
    """The bridge's registry never held anything (a lost database recreated empty)."""

    def cuts_off_every_member(self, current: Iterable[str], own_server: str) -> bool:
        """Whether this answer must be held back: from a registry that never held anything,
        it would cut off every other homeserver `current` lets in."""
        return self.registry_empty and cuts_off_every_member(current, self.servers, own_server)


def parse_answer(body: object) -> Answer | None:
    """The bridge's `{"servers": [...], "version": ...}` (its allowed_servers endpoint), or None
    when it is not a well-formed allow-list (then ignored). The guard and the bot read it."""
    if not isinstance(body, Mapping):
        return None
    servers, version = body.get("servers"), body.get("version")
    if not isinstance(servers, list) or len(servers) > MAX_SERVERS:
        return None
    if not isinstance(version, (str, int)) or isinstance(version, bool):
        return None
    empty = body.get("registry_empty", False)
    if not isinstance(empty, bool):
        return None
    names: set[str] = set()
    for item in servers:
        if not isinstance(item, str) or not is_valid_server_name(item.strip()):
            return None
        names.add(normalise_server_name(item))
    return Answer(frozenset(names), str(version), empty)


def cuts_off_every_member(current: Iterable[str], new: Iterable[str], own_server: str) -> bool:
    """Whether adopting `new` would cut off every other homeserver `current` lets in.

    From a registry that never held anything (`Answer.registry_empty`), such a list is held
    back by the guard and the bot, not applied: it is what a bridge answers from a lost or
    wrong database recreated empty, and applying it would silently cut the federation. An
    admin who removes the last member or peer leaves audit entries: that list applies.
    """
    own = normalise_server_name(own_server)
    before = {normalise_server_name(s) for s in current} - {own}
    after = {normalise_server_name(s) for s in new} - {own}
    return bool(before) and not before & after
