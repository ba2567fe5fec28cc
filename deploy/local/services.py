"""The federation's own services next to each homeserver of the local federation.

Each demo homeserver gets its bridge (directory API, demo register loaded) and, when the bot
is available, its bot. They run as subprocesses of the launcher through the same `caducee`
commands an operator uses (`caducee bridge run`, `caducee bot run`), so the demo exercises the
real entry points. Secrets (service tokens, passwords) live in the state directory, 0600.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import yaml

from deploy.local.ca import write_private
from deploy.local.process import ManagedProcess

logger = logging.getLogger(__name__)

CADUCEE = [sys.executable, "-c", "from deploy.cli import main; main()"]


def caducee_process(
    name: str, args: list[str], log_path: Path, health_url: str = ""
) -> ManagedProcess:
    """A long-running `caducee ...` command (bridge, bot) of the local federation."""
    return ManagedProcess(name, [*CADUCEE, *args], log_path, health_url)


def service_token(directory: Path, name: str) -> str:
    """A service token kept in `directory/<name>.token` (created once, 0600)."""
    path = directory / f"{name}.token"
    if not path.exists():
        write_private(path, secrets.token_hex(32).encode())
    return path.read_text().strip()


def write_bridge_config(
    directory: Path,
    *,
    server_name: str,
    homeserver_url: str,
    federation_name: str,
    port: int,
    openid_allowed_servers: list[str],
    federation_ca_file: Path,
    psc_admission: str | None = None,
    admin_token_file: Path | None = None,
    console_admins: Sequence[str] = (),
) -> Path:
    """Write the bridge's configuration for a demo homeserver; returns its path.

    With `psc_admission`, the bridge decides Pro Santé Connect sign-ins by that rule for the
    homeserver (whose token is `synapse-psc.token`), opening accounts with the homeserver's
    admin token (`admin_token_file`, 0600). `console_admins` may sign in to the console
    (`/admin/`); with the admin token, the console and `caducee admin` can manage that
    homeserver's accounts.
    """
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "server_name": server_name,
        "homeserver_url": homeserver_url,
        "federation_name": federation_name,
        "data_dir": str(directory),
        "listen_host": "127.0.0.1",
        "listen_port": port,
        "service_tokens": [{"name": "bot", "token_file": str(directory / "bot.token")}],
        "openid_allowed_servers": openid_allowed_servers,
        "federation_ca_file": str(federation_ca_file),
        "log_level": "INFO",
    }
    if psc_admission is not None:
        service_token(directory, "synapse-psc")
        config["service_tokens"].append(  # type: ignore[attr-defined]
            {"name": "synapse-psc", "token_file": str(directory / "synapse-psc.token")}
        )
        config["psc"] = {"admission": psc_admission, "synapse_token": "synapse-psc"}
    if console_admins or admin_token_file is not None:
        admin: dict[str, object] = {"users": list(console_admins)}
        if admin_token_file is not None:
            admin["homeserver_admin_token_file"] = str(admin_token_file)
        config["admin"] = admin
    service_token(directory, "bot")
    path = directory / "bridge.yaml"
    write_private(path, yaml.safe_dump(config, allow_unicode=True).encode())
    return path


def run_cli(args: list[str], log_path: Path) -> None:
    """Run a one-shot `caducee ...` command, its output appended to `log_path`."""
    with open(log_path, "ab") as log:
        result = subprocess.run(
            [*CADUCEE, *args], stdout=log, stderr=subprocess.STDOUT, check=False
        )
    if result.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"`caducee {' '.join(args[:2])}` failed:\n{tail}")


def read_json(path: Path) -> dict[str, object]:
    return dict(json.loads(path.read_text())) if path.exists() else {}


def write_bot_config(
    directory: Path,
    *,
    homeserver_url: str,
    user_id: str,
    bridge_url: str,
    bridge_token_file: Path,
    member_servers: list[str],
) -> Path:
    """Write a demo bot's configuration (password and pickle key in 0600 files)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    password_file = directory / "password"
    if not password_file.exists():
        write_private(password_file, secrets.token_urlsafe(24).encode())
    config = {
        "homeserver_url": homeserver_url,
        "user_id": user_id,
        "password_file": str(password_file),
        "store_dir": str(directory / "store"),
        "pickle_key_file": str(directory / "pickle-key"),
        "bridge_url": bridge_url,
        "bridge_token_file": str(bridge_token_file),
        # In force until the bridge answers; then its list (both demo federations, peered).
        "member_servers": member_servers,
        "follow_registry": True,
        "registry_refresh_interval": "5s",
        "default_ttl": "7d",
        "min_ttl": "30s",
        "max_ttl": "52w",
        "log_level": "INFO",
    }
    path = directory / "bot.yaml"
    write_private(path, yaml.safe_dump(config, allow_unicode=True).encode())
    return path


class _LogScanner:
    """Reads a growing log from where it stopped, looking for one marker."""

    def __init__(self, path: Path, marker: str) -> None:
        self._path = path
        self._marker = marker.encode()
        self._offset = 0
        self._tail = b""

    def found(self) -> bool:
        if not self._path.exists():
            return False
        with open(self._path, "rb") as log:
            log.seek(self._offset)
            chunk = log.read()
        self._offset += len(chunk)
        window = self._tail + chunk
        if self._marker in window:
            return True
        self._tail = window[-len(self._marker) :]
        return False


async def wait_for_log_line(
    log_path: Path,
    marker: str,
    *,
    name: str,
    process: subprocess.Popen[bytes] | None = None,
    timeout: float = 120.0,
) -> None:
    """Wait until `marker` appears in a log (for processes with no endpoint telling it)."""
    deadline = time.monotonic() + timeout
    scanner = _LogScanner(log_path, marker)
    while not scanner.found():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{name} exited")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: no '{marker}' in {log_path} after {timeout:.0f} s")
        await asyncio.sleep(0.2)


async def wait_for_allow_list(
    http: aiohttp.ClientSession, bridge_url: str, servers: set[str], timeout: float = 60.0
) -> str:
    """Wait until a bridge's allow-list holds `servers`; return the list's version."""
    deadline = time.monotonic() + timeout
    url = f"{bridge_url}/_caducee/v1/federation/allowed_servers"
    while True:
        async with http.get(url) as response:
            body = await response.json()
        if servers <= set(body["servers"]):
            return str(body["version"])
        if time.monotonic() > deadline:
            raise TimeoutError(f"the bridge at {bridge_url} does not list {sorted(servers)}")
        await asyncio.sleep(0.2)


def fingerprint_of(bridge_config: Path, log_path: Path) -> str:
    """The federation key fingerprint a bridge gives its peers (`caducee admin key show`)."""
    result = subprocess.run(
        [*CADUCEE, "admin", "key", "show", "-c", str(bridge_config)],
        capture_output=True,
        text=True,
        check=False,
    )
    with open(log_path, "a") as log:
        log.write(result.stdout + result.stderr)
    for line in result.stdout.splitlines():
        if line.startswith("Fingerprint:"):
            return line.split(":", 1)[1].strip()
    raise RuntimeError(f"no fingerprint from `caducee admin key show`:\n{result.stderr}")
