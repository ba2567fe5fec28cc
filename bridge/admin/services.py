"""What the admin handlers work with: the database, the homeservers' admin APIs, a clock.

Built once per process from the configuration (`AdminServices.from_config`), by the bridge
application for the console and by `caducee admin` for the CLI, so both run the same handlers
against the same homeservers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp

from bridge.admin.model import AdminError, MatrixId
from bridge.config import BridgeConfig
from bridge.db import Database
from bridge.guard.ids import user_id_parts
from bridge.synapse_admin import SynapseAdmin


def utc_now() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """SQLite gives back naive datetimes; every time the bridge stores is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def server_of(matrix_id: str) -> str:
    """The server part of a Matrix ID; AdminError for anything that is not one."""
    parts = user_id_parts(matrix_id)
    if parts is None:
        raise AdminError("invalid", f"{matrix_id!r} is not a Matrix ID (like '@name:server')")
    return parts[1]


@dataclass
class AdminServices:
    db: Database
    homeservers: Mapping[str, SynapseAdmin]
    """Managed homeservers by server name, each client holding that server's admin token."""
    default_server: str
    public_url: str
    activation_ttl: timedelta = timedelta(hours=72)
    now: Callable[[], datetime] = utc_now
    creating: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Serialises "find a free ID, then create it" within this process."""

    @classmethod
    def from_config(
        cls, config: BridgeConfig, db: Database, http: aiohttp.ClientSession
    ) -> AdminServices:
        settings = config.admin
        clients: dict[str, SynapseAdmin] = {}
        if settings.homeserver_admin_token is not None:
            token = settings.homeserver_admin_token.get_secret_value()
            clients[config.server_name] = SynapseAdmin(http, config.homeserver_url, token)
        for managed in settings.homeservers:
            clients[managed.server_name] = SynapseAdmin(http, managed.url, managed.token())
        public_url = settings.public_url or f"http://{config.listen_host}:{config.listen_port}"
        return cls(
            db=db,
            homeservers=clients,
            default_server=config.server_name,
            public_url=public_url,
            activation_ttl=timedelta(hours=settings.activation_hours),
        )

    def homeserver(self, server_name: str | None) -> tuple[str, SynapseAdmin]:
        name = server_name or self.default_server
        client = self.homeservers.get(name)
        if client is None:
            known = (
                ", ".join(sorted(self.homeservers)) or "none: set admin.homeserver_admin_token_file"
            )
            raise AdminError(
                "invalid", f"{name} is not a homeserver this bridge manages (managed: {known})"
            )
        return name, client

    def client_for(self, matrix_id: MatrixId) -> SynapseAdmin:
        return self.homeserver(server_of(matrix_id))[1]

    def activation_url(self, secret: str) -> str:
        return f"{self.public_url.rstrip('/')}/activate?token={secret}"
