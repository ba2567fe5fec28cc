"""The set of homeservers this federation trusts, and a holder a refresher can swap.

Matrix server names include the port when it is not the default ("localhost:8481"),
and two ports on one host are two different servers, so names are compared exactly
(host lower-cased). The homeserver's own name is always on the list: a member must be
able to talk to itself even if the registry forgets it.

The list comes from the module's configuration, then live from the federation registry
(`bridge.guard.refresh`). `AllowListHolder.replace` is the seam: callbacks read
`holder.current` on every decision, so a swap takes effect at once and atomically, and
subscribers (Synapse's own federation whitelist, `bridge.guard.outsiders`) follow it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from bridge.guard.ids import is_valid_server_name as is_valid_server_name
from bridge.guard.ids import server_part


def normalise_server_name(name: str) -> str:
    """Lower-case the name: DNS is case-insensitive and ports are digits."""
    return name.strip().lower()


def server_of(matrix_id: str) -> str | None:
    """The server part of a user id, room alias or (pre-v12) room id, or None.

    "@alice:localhost:8481" -> "localhost:8481". Room ids of room version 12 are
    hashes without a server part; they give None.
    """
    server = server_part(matrix_id)
    return None if server is None else normalise_server_name(server)


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
    """The current allow-list, replaceable as a whole by the live refresher."""

    def __init__(self, initial: AllowList) -> None:
        self._current = initial
        self._listeners: list[Callable[[AllowList], None]] = []

    def subscribe(self, listener: Callable[[AllowList], None]) -> None:
        """Call `listener` with the current list now and with every list installed later."""
        self._listeners.append(listener)
        listener(self._current)

    @property
    def current(self) -> AllowList:
        return self._current

    def replace(self, servers: Iterable[str]) -> AllowList:
        """Install a new list (the own server is kept) and return it."""
        self._current = AllowList.build(self._current.own_server, servers)
        for listener in self._listeners:
            listener(self._current)
        return self._current


MAX_SERVERS: Final = 100_000


@dataclass(frozen=True)
class Answer:
    """A well-formed answer of the bridge."""

    servers: frozenset[str]
    version: str
    expires: Mapping[str, int] = field(default_factory=dict)
    """Servers allowed as a peer federation's, with the end (ms since the epoch) of the
    manifest that lists them: kept after it only if the bridge says so again."""
    registry_empty: bool = False
    """The bridge's registry never held anything (a lost database recreated empty)."""

    def lapsed(self, now_ms: int) -> frozenset[str]:
        """The servers whose peer manifest has expired at `now_ms`."""
        return frozenset(s for s, end in self.expires.items() if end <= now_ms)

    def cuts_off_every_member(self, current: Iterable[str], own_server: str) -> bool:
        """Whether this answer must be held back: from a registry that never held anything,
        it would cut off every other homeserver `current` lets in."""
        return self.registry_empty and cuts_off_every_member(current, self.servers, own_server)


def _parse_expires(value: object, servers: set[str]) -> dict[str, int] | None:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        return None
    expires: dict[str, int] = {}
    for server, end in value.items():
        name = normalise_server_name(server) if isinstance(server, str) else ""
        if name not in servers or not isinstance(end, int) or isinstance(end, bool):
            return None
        expires[name] = end
    return expires


def parse_answer(body: object) -> Answer | None:
    """The bridge's `{"servers": [...], "version": ..., "expires": {server: ms}}` (its
    allowed_servers endpoint; `expires` optional), or None when it is not a well-formed
    allow-list (then ignored). The guard and the bot read it."""
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
    expires = _parse_expires(body.get("expires"), names)
    if expires is None:
        return None
    return Answer(frozenset(names), str(version), expires, empty)


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
