"""Accounts follow the register: `caducee directory import` with the bridge's configuration
locks, on the real homeserver, the accounts of practitioners who left; switched off in the
configuration it does not; an unlock stays possible."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
import yaml

from bridge.admin.handlers import set_locked
from bridge.admin.model import Actor
from bridge.db import open_database
from bridge.synapse_admin import SynapseAdmin
from deploy.local.federation import Homeserver
from tests.admin_support import random_rpps, services_for, write_register
from tests.test_admin_cli import caducee_admin, run_entry, write_config

pytestmark = pytest.mark.slow
ENTRY = (
    "from bridge.directory.cli import directory_app; directory_app(prog_name='caducee directory')"
)


async def caducee_directory(*args: str) -> tuple[int, str, str]:
    return await run_entry(ENTRY, *args, timeout=180)


def _switch(config: Path, on: bool) -> None:
    data = yaml.safe_load(config.read_text())
    data["admin"]["lock_departed_after_import"] = on
    config.write_text(yaml.safe_dump(data))


async def test_an_import_locks_who_left_the_register_unless_switched_off(
    tmp_path: Path, hs_a: Homeserver
) -> None:
    config = write_config(tmp_path, hs_a)
    leaving, staying = random_rpps(), random_rpps()
    both = write_register(tmp_path / "r1", [(leaving, "ROSE", "ANNE"), (staying, "IRIS", "LEA")])
    code, out, err = await caducee_directory("import", str(both), "-c", str(config))
    assert code == 0, err
    assert "locked now" not in out  # nobody onboarded yet, nobody left
    ids = {}
    for rpps in (leaving, staying):
        code, out, err = await caducee_admin("onboard", rpps, "-c", str(config))
        assert code == 0, err
        ids[rpps] = out.split(" as ", 1)[1].split()[0].rstrip(".;,")
    gone, kept = ids[leaving], ids[staying]
    one = write_register(tmp_path / "r2", [(staying, "IRIS", "LEA")])

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        synapse = SynapseAdmin(http, hs_a.client_url, hs_a.admin_token)

        _switch(config, on=False)
        code, out, err = await caducee_directory(
            "import", str(one), "--allow-shrink", "-c", str(config)
        )
        assert code == 0, err
        assert "were not locked" in out
        assert (await synapse.get_user(gone) or {}).get("locked") is False

        _switch(config, on=True)  # the default
        code, out, err = await caducee_directory(
            "import", str(one), "--allow-shrink", "-c", str(config)
        )
        assert code == 0, err
        assert f"Left the register, locked now: {gone} (RPPS {leaving})" in out
        assert kept not in out
        assert (await synapse.get_user(gone) or {}).get("locked") is True
        assert (await synapse.get_user(kept) or {}).get("locked") is False

        code, out, _ = await caducee_admin("audit", "--limit", "5", "-c", str(config))
        [line] = [ln for ln in out.splitlines() if " lock " in ln]
        assert "directory-import" in line and gone in line

        db = await open_database(f"sqlite:///{tmp_path / 'bridge.db'}", create=True)
        try:  # a register error: the admin unlocks in one action
            await set_locked(services_for(db, http, hs_a), Actor("admin"), gone, locked=False)
        finally:
            await db.close()
        assert (await synapse.get_user(gone) or {}).get("locked") is False
