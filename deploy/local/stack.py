"""The demo's services around each homeserver: a bridge with the demo register, and a bot.

`DemoStack` is what `caducee local up` runs next to the homeservers of `LocalFederation`:
for each homeserver, a bridge (`caducee bridge run`) whose directory holds the demo extract
with the demo practitioners linked to their accounts, and a bot (`caducee bot run`) signed in
as `@caducee:<server>`, exempted from Synapse's per-account rate limits (not a server admin).
Ports: bridge on federation port + 12000.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from bridge.config import load_config
from bridge.db import open_database
from bridge.directory.store import link_matrix_id
from bridge.synapse_admin import SynapseAdmin
from deploy.local.ca import write_private
from deploy.local.demo import BRIDGE_PORT_OFFSET, PSC_ADMISSION
from deploy.local.federation import LocalFederation
from deploy.local.process import ManagedProcess
from deploy.local.psc_standin import PscStandIn
from deploy.local.services import (
    caducee_process,
    fingerprint_of,
    run_cli,
    service_token,
    wait_for_allow_list,
    wait_for_log_line,
    write_bot_config,
    write_bridge_config,
)

DEMO_REGISTER = Path(__file__).parent / "demo" / "PS_LibreAcces_Personne_activite_demo.txt"
BOT_LOCALPART = "caducee"
BOT_READY_MARKER = "ready (device"


async def exempt_bot(client_url: str, admin_token: str, bot_id: str) -> None:
    """Lift Synapse's per-account rate limits for the bot (idempotent): it answers every
    doctor of the homeserver, where the limits are sized for one person."""
    async with aiohttp.ClientSession() as http:
        await SynapseAdmin(http, client_url, admin_token).exempt_from_rate_limits(bot_id)


class DemoStack:
    """Bridges and bots of the demo federation (one of each per homeserver)."""

    def __init__(self, federation: LocalFederation, psc: PscStandIn | None = None) -> None:
        self.federation = federation
        self.psc = psc
        self.services: list[ManagedProcess] = []
        self.bridge_urls: dict[str, str] = {}
        self.bot_ids: dict[str, str] = {}
        self.pids: dict[str, dict[str, int | None]] = {}
        """Per homeserver, the bridge's and the bot's process ids (`caducee local status`)."""

    async def start(self) -> None:
        member_servers = [hs.server_name for hs in self.federation.homeservers.values()]
        if self.psc is not None:
            async with aiohttp.ClientSession() as http:
                await self.psc.wait_ready(http)
        for name, homeserver in self.federation.homeservers.items():
            directory = self.federation.base_dir / f"bridge-{name}"
            port = homeserver.spec.federation_port + BRIDGE_PORT_OFFSET
            admin_token = directory / "homeserver-admin.token"
            write_private(admin_token, homeserver.admin_token.encode())
            config_path = write_bridge_config(
                directory,
                server_name=homeserver.server_name,
                homeserver_url=homeserver.client_url,
                federation_name=f"Fédération {name.upper()}",
                port=port,
                openid_allowed_servers=member_servers,
                federation_ca_file=homeserver.ca.cert,
                psc_admission=None if self.psc is None else PSC_ADMISSION[name],
                admin_token_file=admin_token,
                # The demo's admin signs in to the console with the password `make up` prints.
                console_admins=[homeserver.admin_user_id],
            )
            log = directory / "bridge.log"
            if not (directory / "bridge.db").exists():  # the demo's first start creates it
                run_cli(["bridge", "init", "--config", str(config_path)], log)
                run_cli(
                    ["directory", "import", str(DEMO_REGISTER), "--config", str(config_path)], log
                )
            await self._link_demo_accounts(config_path, name)
            url = f"http://127.0.0.1:{port}"
            bridge = caducee_process(
                f"bridge {name}",
                ["bridge", "run", "--config", str(config_path)],
                log,
                f"{url}/_caducee/v1/health",
            )
            bridge.launch()
            self.services.append(bridge)
            self.bridge_urls[name] = url
            self.pids[name] = {"bridge_pid": bridge.pid}

            bot_dir = self.federation.base_dir / f"bot-{name}"
            bot_config = write_bot_config(
                bot_dir,
                homeserver_url=homeserver.client_url,
                user_id=f"@{BOT_LOCALPART}:{homeserver.server_name}",
                bridge_url=url,
                bridge_token_file=directory / "bot.token",
                member_servers=member_servers,
            )
            service_token(directory, "bot")
            self.bot_ids[name] = await homeserver.ensure_user(
                BOT_LOCALPART,
                (bot_dir / "password").read_text().strip(),
                displayname="Caducée",
            )
            await exempt_bot(homeserver.client_url, homeserver.admin_token, self.bot_ids[name])
            if not (bot_dir / "store" / "bot.db").exists():  # the demo's first start creates it
                run_cli(["bot", "init", "--config", str(bot_config)], bot_dir / "bot.log")
            bot = caducee_process(
                f"bot {name}", ["bot", "run", "--config", str(bot_config)], bot_dir / "bot.log"
            )
            bot.launch()
            self.services.append(bot)
            self.pids[name]["bot_pid"] = bot.pid
        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(s.wait_ready(http) for s in self.services if s.health_url))
        await asyncio.to_thread(self._peer_once)
        await self._wait_guards_follow(set(member_servers))
        await asyncio.gather(
            *(
                wait_for_log_line(s.log_path, BOT_READY_MARKER, name=s.name, process=s.process)
                for s in self.services
                if not s.health_url
            )
        )

    async def _wait_guards_follow(self, servers: set[str]) -> None:
        """Wait until every homeserver's guard runs its bridge's full allow-list (the guard
        logs each version it loads), so the demo is usable the moment it says it is ready."""
        async with aiohttp.ClientSession() as http:
            for name, homeserver in self.federation.homeservers.items():
                version = await wait_for_allow_list(http, self.bridge_urls[name], servers)
                await wait_for_log_line(
                    homeserver.log_path,
                    f"Allow-list version {version}",
                    name=f"homeserver {homeserver.server_name}",
                    process=homeserver.process,
                )

    def _peer_once(self) -> None:
        """Make each demo federation trust the other (first start only: kept in the DB)."""
        marker = self.federation.base_dir / "peered"
        if marker.exists():
            return
        bridges = {
            name: self.federation.base_dir / f"bridge-{name}"
            for name in self.federation.homeservers
        }
        fingerprints = {
            name: fingerprint_of(path / "bridge.yaml", path / "admin.log")
            for name, path in bridges.items()
        }
        for name, path in bridges.items():
            for other in bridges:
                if other != name:
                    url = self.bridge_urls[other]
                    config = str(path / "bridge.yaml")
                    run_cli(
                        ["admin", "peer", "add", url, fingerprints[other], "-c", config],
                        path / "admin.log",
                    )
        marker.touch()

    async def _link_demo_accounts(self, config_path: Path, name: str) -> None:
        config = load_config(config_path)
        database = await open_database(config.effective_database_url)
        try:
            async with database.sessions.begin() as session:
                for account in self.federation.accounts.get(name, []):
                    if account["rpps"]:
                        await link_matrix_id(
                            session, account["rpps"], account["user_id"], visible=True
                        )
        finally:
            await database.close()

    def stop(self) -> None:
        if self.psc is not None:
            self.psc.stop()
        for service in self.services:
            service.terminate()
        for service in self.services:
            service.wait_stopped()
        self.services.clear()
