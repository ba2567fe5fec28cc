"""What the registry holds and hands out, shared by the handlers, the routes, the CLI, the console.

Nothing here does I/O. Errors are `bridge.admin.model.AdminError` (same kinds, same messages
for the admin, same mapping to CLI exit codes and HTTP statuses as onboarding) and the actor
is `bridge.admin.model.Actor`, so the console treats registry and onboarding actions alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, NewType

FEDERATION_PREFIX: Final = "/_caducee/v1/federation"
MANIFEST_PATH: Final = f"{FEDERATION_PREFIX}/manifest"
"""Public: the federation's signed manifest, fetched by peer bridges."""
ALLOWED_SERVERS_PATH: Final = f"{FEDERATION_PREFIX}/allowed_servers"
"""Public, read-only: the servers our homeservers' guards let in (ours and verified peers')."""

FederationName = NewType("FederationName", str)
"""The name a federation signs its manifest under (`signatures: {name: {...}}`)."""
Fingerprint = NewType("Fingerprint", str)
"""A federation's key as admins exchange it: the Ed25519 public key, unpadded base64 (43
characters, like Matrix key ids' values). Pinned when peering; see `bridge.registry.keys`."""
ServerName = NewType("ServerName", str)
"""A Matrix server name, host[:port], lower-cased."""


@dataclass(frozen=True, slots=True)
class Member:
    """A member organisation and the homeservers it runs."""

    name: str
    homeservers: tuple[ServerName, ...]
    added_at: datetime


@dataclass(frozen=True, slots=True)
class RemovedMember:
    name: str
    homeservers: tuple[ServerName, ...]
    """Its homeservers, removed with it (they are cut off from the federation)."""


@dataclass(frozen=True, slots=True)
class Peer:
    """Another federation we trust, as the admin added it and as we last verified it."""

    url: str
    fingerprint: Fingerprint
    added_at: datetime
    name: FederationName | None
    """From its last verified manifest (None until one was verified)."""
    version: int | None
    homeservers: tuple[ServerName, ...]
    """Of its last verified manifest: these are allowed to federate with us."""
    verified_at: datetime | None
    expires_at: datetime | None
    checked_at: datetime | None
    problem: str | None
    """Why the last fetch was refused or failed (None when it succeeded)."""

    def stale(self, now: datetime) -> bool:
        """Its last good manifest has expired: the peer has not published a valid one since."""
        return self.expires_at is not None and self.expires_at <= now


@dataclass(frozen=True, slots=True)
class PeerAdded:
    peer: Peer
    checked: bool
    """Whether its manifest was fetched and verified right away (else at the next refresh)."""


@dataclass(frozen=True, slots=True)
class AllowedServers:
    """What the guards of our homeservers allow: our homeservers and verified peers'."""

    servers: tuple[ServerName, ...]
    version: str
    """Changes whenever `servers` changes (a digest of it): guards log the switch."""
    expires: dict[ServerName, int] = field(default_factory=dict)
    """For servers allowed only as a peer's: when (ms since the epoch) the manifest that lists
    them expires, so that a guard which cannot reach the bridge any more drops them then."""
    registry_empty: bool = False
    """The registry never held anything (`store.never_used`): guards and bots do not let such
    a list cut off every member they let in (a lost database recreated empty)."""
