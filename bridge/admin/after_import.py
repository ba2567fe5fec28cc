"""After each directory import: lock the accounts of practitioners who left the register.

On by default (`admin.lock_departed_after_import` in the bridge configuration); the same
`lock_departed` as `caducee admin lock-departed` and the console's button, recorded in the
audit log under the actor ``directory-import``. Unlocking stays one action in the console.
"""

from __future__ import annotations

from pathlib import Path

from bridge.admin.departed import lock_departed
from bridge.admin.model import Actor, Departed
from bridge.admin.services import AdminServices

ACTOR = Actor("directory-import")


async def lock_after_import(services: AdminServices, *, enabled: bool) -> list[Departed] | None:
    """Every departed practitioner and where their account stands; None when switched off."""
    if not enabled:
        return None
    return await lock_departed(services, ACTOR)


def describe(departed: list[Departed] | None) -> list[str]:
    """Lines for the admin, after the import's own report. Pure."""
    if departed is None:
        return ["Departed practitioners were not locked (admin.lock_departed_after_import is off)."]
    lines = []
    for item in departed:
        if item.problem:
            lines.append(
                f"Left the register, NOT locked: {item.matrix_id} (RPPS {item.rpps}): "
                f"{item.problem}"
            )
        elif item.locked_now:
            lines.append(f"Left the register, locked now: {item.matrix_id} (RPPS {item.rpps})")
    return lines


def run_after_import(config_path: Path) -> list[str]:
    """Load the bridge configuration, lock the departed, return the lines to print."""
    import aiohttp

    from bridge.admin.cli_support import run_with_database
    from bridge.config import BridgeConfig
    from bridge.db import Database

    async def work(config: BridgeConfig, db: Database) -> list[str]:
        enabled = config.admin.lock_departed_after_import
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as http:
            services = AdminServices.from_config(config, db, http)
            return describe(await lock_after_import(services, enabled=enabled))

    return run_with_database(config_path, work)
