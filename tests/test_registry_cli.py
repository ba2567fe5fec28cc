"""`caducee admin member|homeserver|peer|key`: through `admin_app` as an admin types it."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest
import yaml
from signedjson.key import generate_signing_key
from typer.testing import CliRunner

from bridge.admin.cli import admin_app
from bridge.http.server import StartupError, serve
from bridge.registry.keys import fingerprint_of, load
from tests.admin_support import bridge_init
from tests.bridge_http_support import init_database
from tests.conftest import free_port
from tests.registry_support import registry_config

PEER_KEY = fingerprint_of(generate_signing_key("p1"))


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "server_name": "own.test",
                "homeserver_url": "http://127.0.0.1:9",
                "federation_name": "Réseau test",
                "data_dir": "data",
            }
        )
    )
    bridge_init(path)
    return path


def run(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(admin_app, [*args, "--config", str(config)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_key_show_prints_the_fingerprint_of_a_key_made_owner_only(config: Path) -> None:
    code, out, _ = run(config, "key", "show")
    assert code == 0
    key_file = config.parent / "data" / "federation.signing.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert f"Fingerprint: {fingerprint_of(load(key_file))}" in out
    assert "Federation: Réseau test" in out
    assert run(config, "key", "show")[1] == out


def test_members_homeservers_and_peers_round_trip(config: Path) -> None:
    assert run(config, "member", "list")[1].startswith("No member yet")
    assert run(config, "member", "add", "CHU Nord") == (0, "Member 'CHU Nord' added.\n", "")
    code, out, _ = run(config, "homeserver", "add", "HS.chu-nord.fr", "--member", "CHU Nord")
    assert (code, out) == (0, "hs.chu-nord.fr added to 'CHU Nord'.\n")
    assert run(config, "member", "list")[1] == "CHU Nord: hs.chu-nord.fr\n"

    down = f"http://127.0.0.1:{free_port()}"
    code, out, _ = run(config, "peer", "add", down, PEER_KEY)
    assert code == 0
    assert f"<{down}> key {PEER_KEY}: no manifest verified yet; last check: unreachable" in out
    assert "checked again at every refresh" in out
    assert down in run(config, "peer", "list")[1]
    assert run(config, "peer", "remove", down)[0] == 0
    assert run(config, "peer", "list")[1].startswith("No peer federation")

    code, out, _ = run(config, "homeserver", "remove", "hs.chu-nord.fr")
    assert (code, out) == (0, "hs.chu-nord.fr removed (it belonged to 'CHU Nord').\n")
    code, out, _ = run(config, "member", "remove", "CHU Nord")
    assert (code, out) == (0, "Member 'CHU Nord' removed, with its homeservers: none.\n")
    code, out, _ = run(config, "audit")
    assert code == 0
    for action in ("member_add", "homeserver_add", "peer_add", "peer_remove", "member_remove"):
        assert " cli:" in out and action in out


@pytest.mark.parametrize(
    ("args", "message", "status"),
    [
        (("member", "remove", "Nobody"), "'Nobody' is not a member", 1),
        (("homeserver", "add", "bad name!", "--member", "X"), "not a Matrix server name", 2),
        (("peer", "add", "https://peer.example", "short"), "not a federation key fingerprint", 2),
        (("peer", "add", "peer.example", PEER_KEY), "not a bridge URL", 2),
        (("peer", "add", "http://peer.example", PEER_KEY), "uses plain http", 2),
        (("peer", "add", "http://10.1.2.3:8080", PEER_KEY), "only accepted on this machine", 2),
        (("peer", "remove", "nobody"), "is not a peer", 1),
    ],
)
def test_mistakes_are_one_line_on_stderr_with_the_documented_status(
    config: Path, args: tuple[str, ...], message: str, status: int
) -> None:
    """2 for bad input (usage), 1 for an action that cannot be done (README: exit statuses)."""
    code, out, err = run(config, *args)
    assert code == status
    assert err.startswith("Error: ") and message in err
    assert "Traceback" not in err + out


def test_a_missing_configuration_is_reported_plainly(tmp_path: Path) -> None:
    code, _, err = run(tmp_path / "nope.yaml", "member", "list")
    assert code == 2
    assert "no such file" in err


async def test_a_bridge_whose_signing_key_is_exposed_refuses_to_start(tmp_path: Path) -> None:
    config = registry_config(tmp_path, listen_port=free_port())
    key_file = config.effective_signing_key_file
    key_file.parent.mkdir(parents=True)
    key_file.write_text("ed25519 a1 " + "A" * 43 + "\n")
    key_file.chmod(0o644)
    await init_database(config)
    with pytest.raises(StartupError, match="chmod 600"):
        await asyncio.wait_for(serve(config, asyncio.Event()), timeout=30)
