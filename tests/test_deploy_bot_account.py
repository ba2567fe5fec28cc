"""`caducee deploy bot-account`: the deployment's own step gives the bot its account and lifts
Synapse's per-account rate limits for it, and for it only (real Synapse: hs_a)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest
import yaml

from bridge.synapse_admin import SynapseAdmin
from deploy.local.federation import Homeserver
from deploy.production.bot_account import SETUP_LOCALPART

CADUCEE = [sys.executable, "-c", "from deploy.cli import main; main()"]
NO_LIMIT = {"messages_per_second": 0, "burst_count": 0}


def _step(manifest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CADUCEE, "deploy", "bot-account", "--config", str(manifest)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _manifest(tmp_path: Path, synapse_url: str, homeserver_config: Path, bot_id: str) -> Path:
    """What `caducee deploy render` writes, pointed at the test homeserver."""
    bot = tmp_path / "bot.yaml"
    bot.write_text(yaml.safe_dump({"user_id": bot_id, "password": uuid.uuid4().hex}))
    manifest = tmp_path / "deployment.yaml"
    section = {
        "synapse_url": synapse_url,
        "homeserver_config": str(homeserver_config),
        "bot_config": str(bot),
    }
    manifest.write_text(yaml.safe_dump({"bot_account": section}))
    return manifest


@pytest.mark.slow
async def test_the_bot_account_step_exempts_the_bot_and_no_one_else(
    hs_a: Homeserver, tmp_path: Path
) -> None:
    bot_id = f"@bot-{uuid.uuid4().hex[:8]}:{hs_a.server_name}"
    person = await hs_a.register_user(f"dr-{uuid.uuid4().hex[:8]}", "a person's password")
    manifest = _manifest(tmp_path, hs_a.client_url, hs_a.config_path, bot_id)

    first = await asyncio.to_thread(_step, manifest)
    assert first.returncode == 0, first.stderr
    assert "account created" in first.stdout and "rate limits lifted" in first.stdout
    again = await asyncio.to_thread(_step, manifest)  # idempotent: says what it found
    assert again.returncode == 0, again.stderr
    assert "already there" in again.stdout and "already lifted" in again.stdout

    async with aiohttp.ClientSession() as http:
        admin = SynapseAdmin(http, hs_a.client_url, hs_a.admin_token)
        assert await admin.rate_limit_override(bot_id) == NO_LIMIT
        assert await admin.rate_limit_override(person.user_id) == {}
        account = await admin.get_user(bot_id)
        assert account is not None and account["admin"] is False
        # The bot signs in with its configured password; the setup admin left no session.
        password = yaml.safe_load((tmp_path / "bot.yaml").read_text())["password"]
        assert (await SynapseAdmin(http, hs_a.client_url).login(bot_id, password)).user_id == bot_id
        setup_id = f"@{SETUP_LOCALPART}:{hs_a.server_name}"
        async with http.get(
            f"{hs_a.client_url}/_synapse/admin/v2/users/{setup_id}/devices",
            headers={"Authorization": f"Bearer {hs_a.admin_token}"},
        ) as response:
            assert (await response.json())["devices"] == []


def test_the_bot_account_step_without_its_section_says_to_render_again(tmp_path: Path) -> None:
    manifest = tmp_path / "deployment.yaml"
    manifest.write_text(yaml.safe_dump({"databases": {}}))
    done = _step(manifest)
    assert done.returncode == 2
    assert "no 'bot_account' section" in done.stderr and "Traceback" not in done.stderr
