"""`caducee admin ...` as an admin runs it: a process with the bridge's configuration file,
against a real homeserver. Mistakes are one line and exit status 2, never a traceback."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import yaml

from bridge.db import open_database
from deploy.local.federation import Homeserver
from tests.admin_support import add_practitioner, bridge_init, random_rpps

SERVICE_TOKEN = "bot-" + "s" * 40

pytestmark = pytest.mark.slow
ENTRY = "from bridge.admin.cli import admin_app; admin_app(prog_name='caducee admin')"


async def run_entry(entry: str, *args: str, timeout: float = 120) -> tuple[int, str, str]:
    """Run a command group in its own Python process: (exit status, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        entry,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def caducee_admin(*args: str) -> tuple[int, str, str]:
    return await run_entry(ENTRY, *args)


def write_config(tmp_path: Path, hs: Homeserver) -> Path:
    token_file = tmp_path / "admin.token"
    token_file.write_text(hs.admin_token)
    token_file.chmod(0o600)
    path = tmp_path / "bridge.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "server_name": hs.server_name,
                "homeserver_url": hs.client_url,
                "database_url": f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}",
                "service_tokens": [{"name": "bot", "token": SERVICE_TOKEN}],
                "admin": {
                    "homeserver_admin_token_file": "admin.token",
                    "public_url": "https://bridge.example.test",
                },
            }
        )
    )
    bridge_init(path)
    return path


async def test_admin_cli_onboards_audits_and_offboards(tmp_path: Path, hs_a: Homeserver) -> None:
    config = write_config(tmp_path, hs_a)
    rpps = random_rpps()
    db = await open_database(f"sqlite:///{tmp_path / 'bridge.db'}", create=True)
    try:
        await add_practitioner(db, rpps, "HUGO", "LIGNE" + rpps[-5:])
    finally:
        await db.close()

    code, out, err = await caducee_admin("onboard", rpps, "-c", str(config))
    assert (code, err) == (0, ""), err
    matrix_id = f"@hugo.ligne{rpps[-5:]}:{hs_a.server_name}"
    assert f"as {matrix_id}" in out
    assert "https://bridge.example.test/activate?token=" in out

    code, out, err = await caducee_admin("onboard", rpps, "-c", str(config))
    # A conflict is an action that cannot be done (1), not a usage error (2).
    assert code == 1 and err.strip() == f"Error: RPPS {rpps} is already onboarded as {matrix_id}"

    code, out, _ = await caducee_admin("audit", "--limit", "5", "-c", str(config))
    assert code == 0
    [line] = [ln for ln in out.splitlines() if " onboard " in ln]
    assert "cli:" in line and matrix_id in line and f"rpps={rpps}" in line
    assert "token" not in out

    code, out, err = await caducee_admin("lock-departed", "-c", str(config))
    assert (code, out.strip()) == (0, "Every onboarded practitioner is still in the register.")

    code, out, err = await caducee_admin("offboard", matrix_id, "-c", str(config))
    assert code == 0, err
    assert out.strip() == f"Deactivated {matrix_id} (RPPS {rpps} unlinked); removed from 0 room(s)."


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["onboard", "123"], "Error: '123' is not an RPPS (11 digits) or ADELI (9) number"),
        (
            ["onboard", "10000000000", "--homeserver", "nowhere.test"],
            "Error: nowhere.test is not a homeserver this bridge manages",
        ),
        (["offboard", "jeanne"], "Error: 'jeanne' is not a Matrix ID"),
    ],
)
async def test_admin_cli_mistakes_are_one_line_and_exit_2(
    tmp_path: Path, hs_a: Homeserver, args: list[str], message: str
) -> None:
    config = write_config(tmp_path, hs_a)
    code, _, err = await caducee_admin(*args, "-c", str(config))
    assert code == 2
    assert err.startswith(message) and "Traceback" not in err


async def test_admin_cli_bulk_file_names_bad_lines(tmp_path: Path, hs_a: Homeserver) -> None:
    config = write_config(tmp_path, hs_a)
    csv = tmp_path / "batch.csv"
    csv.write_text("rpps\n12\n10000000000\n")
    code, _, err = await caducee_admin("onboard-csv", str(csv), "--dry-run", "-c", str(config))
    assert code == 2
    assert "line 2: '12' is not an RPPS" in err
    assert "nothing was changed" in err and "Traceback" not in err
    code, _, err = await caducee_admin(
        "onboard-csv", str(tmp_path / "missing.csv"), "-c", str(config)
    )
    assert code == 2 and "cannot read" in err


async def test_admin_cli_bad_configuration(tmp_path: Path) -> None:
    code, _, err = await caducee_admin("audit", "-c", str(tmp_path / "absent.yaml"))
    assert code == 2 and err.startswith("Error: ") and "Traceback" not in err
