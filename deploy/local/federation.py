"""The local federation: N homeservers on loopback, a private CA, and a state file.

`LocalFederation` is shared by `caducee local up` (the demo) and the test fixtures. It
starts the homeservers in parallel, makes sure each has its server admin, and writes a
state file (`state.json`, mode 0600: it holds demo passwords) describing what runs where,
which `caducee local status --json` prints for scripts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from deploy.local.ca import ensure_ca, write_private
from deploy.local.homeserver import Homeserver, HomeserverSpec, RegisteredUser
from deploy.local.state import STATE_FILE, read_state

logger = logging.getLogger(__name__)


__all__ = [
    "DemoAccount",
    "Homeserver",
    "HomeserverSpec",
    "LocalFederation",
    "RegisteredUser",
    "read_state",
]


@dataclass(frozen=True)
class DemoAccount:
    """A demo practitioner account, created on first start and kept afterwards."""

    homeserver: str  # HomeserverSpec.name
    localpart: str
    display_name: str
    rpps: str = ""


@dataclass
class LocalFederation:
    """Homeservers of a local federation, their CA and their state directory."""

    base_dir: Path
    specs: list[HomeserverSpec]
    homeservers: dict[str, Homeserver] = field(default_factory=dict)
    accounts: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)  # bridge/bot per server

    def __post_init__(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o700)
        ca = ensure_ca(self.base_dir / "ca")
        for spec in self.specs:
            self.homeservers[spec.name] = Homeserver(spec, self.base_dir / f"hs-{spec.name}", ca)

    def __getitem__(self, name: str) -> Homeserver:
        return self.homeservers[name]

    async def start(self, timeout: float = 90.0) -> None:
        """Start every homeserver in parallel and wait until all answer."""
        for homeserver in self.homeservers.values():
            homeserver.launch()
        try:
            async with aiohttp.ClientSession() as http:
                await asyncio.gather(
                    *(hs.wait_ready(http, timeout) for hs in self.homeservers.values())
                )
                await asyncio.gather(*(hs.ensure_admin(http) for hs in self.homeservers.values()))
        except BaseException:
            self.stop()
            raise
        self.write_state()

    def stop(self) -> None:
        """Stop all homeservers cleanly (SIGTERM, then SIGKILL past a timeout)."""
        for homeserver in self.homeservers.values():
            homeserver.terminate()
        for homeserver in self.homeservers.values():
            homeserver.wait_stopped()
        state = self.base_dir / STATE_FILE
        if state.exists():
            state.unlink()

    async def ensure_demo_accounts(self, accounts: Iterable[DemoAccount]) -> None:
        """Create the demo practitioners' accounts (idempotent; passwords kept in the state)."""
        passwords_file = self.base_dir / "demo-passwords.json"
        passwords: dict[str, str] = (
            json.loads(passwords_file.read_text()) if passwords_file.exists() else {}
        )
        for account in accounts:
            homeserver = self.homeservers[account.homeserver]
            user_id = f"@{account.localpart}:{homeserver.server_name}"
            password = passwords.setdefault(user_id, _demo_password())
            write_private(passwords_file, json.dumps(passwords, indent=2).encode())
            await homeserver.ensure_user(
                account.localpart, password, displayname=account.display_name
            )
            self.accounts.setdefault(account.homeserver, []).append(
                {
                    "user_id": user_id,
                    "password": password,
                    "display_name": account.display_name,
                    "rpps": account.rpps,
                }
            )
        self.write_state()

    def state(self) -> dict[str, Any]:
        return {
            "state_dir": str(self.base_dir),
            "launcher_pid": os.getpid(),
            "homeservers": [
                {
                    "name": hs.name,
                    "server_name": hs.server_name,
                    "client_url": hs.client_url,
                    "federation_port": hs.spec.federation_port,
                    "pid": hs.process.pid if hs.process else None,
                    "admin": {"user_id": hs.admin_user_id, "password": hs.admin_password},
                    "demo_accounts": self.accounts.get(hs.name, []),
                    "log": str(hs.log_path),
                    **self.services.get(hs.name, {}),
                }
                for hs in self.homeservers.values()
            ],
        }

    def write_state(self) -> None:
        write_private(self.base_dir / STATE_FILE, json.dumps(self.state(), indent=2).encode())


def _demo_password() -> str:
    return "demo-" + secrets.token_urlsafe(12)
