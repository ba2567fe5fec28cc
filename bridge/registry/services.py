"""What the registry's handlers work with: the database, the signing key, a clock, HTTP.

Built once per process from the configuration (`RegistryServices.from_config`): by the bridge
application (routes, peer refresher, console) and by `caducee admin` (CLI), so both run the
same handlers on the same data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
from signedjson.types import SigningKey

from bridge.config import BridgeConfig
from bridge.db import Database
from bridge.registry import keys
from bridge.registry.model import FederationName, Fingerprint, ServerName


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RegistryServices:
    db: Database
    own_server: ServerName
    """The bridge's own homeserver: always in the manifest and on the allow-list."""
    federation: FederationName
    signing_key: SigningKey
    manifest_lifetime_seconds: int = 24 * 3600
    http: aiohttp.ClientSession | None = None
    """For fetching peers' manifests; without it, peers are only checked by the bridge."""
    now: Callable[[], datetime] = utc_now

    @classmethod
    def from_config(
        cls, config: BridgeConfig, db: Database, http: aiohttp.ClientSession | None = None
    ) -> RegistryServices:
        """Raises `keys.KeyFileError` when the signing key cannot be read or created."""
        return cls(
            db=db,
            own_server=ServerName(config.server_name.lower()),
            federation=FederationName(config.effective_federation_name),
            signing_key=keys.load_or_create(config.effective_signing_key_file),
            manifest_lifetime_seconds=config.manifest_lifetime_seconds,
            http=http,
        )

    @property
    def fingerprint(self) -> Fingerprint:
        return keys.fingerprint_of(self.signing_key)
