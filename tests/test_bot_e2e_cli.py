"""`caducee bot run` as an operator starts it: a subprocess that answers an encrypted DM,
keeps its secrets private, logs no content or token, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import secrets
import signal
import stat
import sys
from pathlib import Path

import pytest
import yaml

from deploy.local.federation import Homeserver
from tests.matrix_helpers import Doctor, unique

pytestmark = pytest.mark.slow

CADUCEE = Path(sys.executable).parent / "caducee"


def bot_command() -> list[str]:
    """`caducee bot` once the root CLI mounts it; until then the very same typer app."""
    import subprocess

    probe = subprocess.run(
        [str(CADUCEE), "bot", "--help"], capture_output=True, check=False, timeout=60
    )
    if probe.returncode == 0:
        return [str(CADUCEE), "bot"]
    return [sys.executable, "-m", "bot.cli"]


async def test_bot_runs_from_the_command_line(
    hs_a: Homeserver, hs_b: Homeserver, tmp_path: Path
) -> None:
    password = secrets.token_urlsafe(16)
    localpart = unique("caducee-cli")
    await hs_a.register_user(localpart, password)
    (tmp_path / "password").write_text(password)
    (tmp_path / "password").chmod(0o600)
    config = {
        "homeserver_url": hs_a.client_url,
        "user_id": f"@{localpart}:{hs_a.server_name}",
        "password_file": "password",
        "store_dir": "store",
        "pickle_key_file": "pickle-key",
        "member_servers": [hs_a.server_name, hs_b.server_name],
        "log_level": "DEBUG",
    }
    path = tmp_path / "bot.yaml"
    path.write_text(yaml.safe_dump(config))
    init = await asyncio.create_subprocess_exec(
        *bot_command(),
        "init",
        "--config",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    said, _ = await asyncio.wait_for(init.communicate(), 60)
    assert init.returncode == 0 and b"Created the bot's database" in said, said
    log_path = tmp_path / "bot.log"
    log = log_path.open("wb")
    process = await asyncio.create_subprocess_exec(
        *bot_command(), "run", "--config", str(path), stdout=log, stderr=log
    )
    log.close()
    doctor = await Doctor.create(hs_b, tmp_path)
    secret_body = "!find " + secrets.token_hex(8)
    try:
        room_id = await doctor.dm(config["user_id"], timeout=60)
        await doctor.send(room_id, "!help")
        await doctor.wait_for_text(config["user_id"], lambda b: "!find" in b, timeout=60)
        mark = len(doctor.seen)
        await doctor.send(room_id, secret_body)
        await doctor.wait_for_text(config["user_id"], after=mark, timeout=60)
    finally:
        await doctor.close()
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)
    log_text = log_path.read_text(errors="replace")
    assert code == 0, log_text[-3000:]
    assert "ready (device" in log_text
    assert password not in log_text and secret_body not in log_text
    session = (tmp_path / "store" / "session.json").read_text()
    token = yaml.safe_load(session)["access_token"]
    assert token not in log_text
    store = tmp_path / "store"
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    for item in [*store.iterdir(), tmp_path / "pickle-key"]:
        if item.is_file():
            assert stat.S_IMODE(item.stat().st_mode) == 0o600, item
