"""Helpers for the admin tests: a bridge database on SQLite or PostgreSQL, practitioners in
the directory, departures as a re-import reports them, services wired to a real homeserver."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import sqlalchemy as sa

from bridge.admin.services import AdminServices
from bridge.db import Database
from bridge.directory.rows import FIELD_SEP
from deploy.local.federation import Homeserver
from tests.directory_support import directory_database

PUBLIC_URL = "http://bridge.test"


def bridge_init(config: Path) -> None:
    """`caducee bridge init -c CONFIG`, as an operator runs it once before any other command:
    no `admin` or `directory` command creates the bridge's database."""
    import subprocess
    import sys

    entry = "from bridge.cli import bridge_app; bridge_app(prog_name='caducee bridge')"
    done = subprocess.run(
        [sys.executable, "-c", entry, "init", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def random_rpps() -> str:
    """A fresh 11-digit number (homeservers are shared by the whole session)."""
    return "1" + "".join(random.choice("0123456789") for _ in range(10))


bridge_database = directory_database  # an empty, migrated bridge DB on SQLite or PostgreSQL


async def add_practitioner(
    db: Database, rpps: str, first: str, last: str, *, title: str = "Docteur"
) -> None:
    """One practitioner in the live directory table, as an import leaves it (columns the
    admin does not read - search words, sort keys - get plausible values, whatever the
    directory's schema adds)."""
    async with db.engine.connect() as conn:
        columns = await conn.run_sync(lambda c: sa.inspect(c).get_columns("directory_practitioner"))
    known: dict[str, object] = {
        "rpps": rpps,
        "id_type": "8",
        "last_name": last,
        "first_name": first,
        "title": title,
        "profession_code": "10",
        "profession": "Médecin",
        # One activity, encoded as the importer stores it (bridge.directory.rows).
        "activities": FIELD_SEP.join(
            ["SM04", "Cardiologie", "Libéral", "", "69002", "Lyon", "69", "Rhône", ""]
        ),
    }
    names, values, params = [], [], dict(known)
    for column in columns:
        name = column["name"]
        if name == "id" or (name not in known and column["nullable"]):
            continue
        names.append(name)
        if name in known:
            values.append(f":{name}")
        elif "TSVECTOR" in str(column["type"]).upper():
            values.append("to_tsvector('simple', :words)")
            params["words"] = f"{first} {last}".lower()
        else:
            values.append(f":{name}")
            params[name] = f"{last.lower()}\t{first.lower()}\t{rpps}" if name == "name_key" else ""
    insert = sa.text(
        f"INSERT INTO directory_practitioner (id, {', '.join(names)}) "  # noqa: S608
        f"VALUES (:id, {', '.join(values)})"
    )
    async with db.sessions.begin() as session:
        params["id"] = await session.scalar(
            sa.text("SELECT COALESCE(MAX(id), 0) + 1 FROM directory_practitioner")
        )
        await session.execute(insert, params)


async def strike_off(db: Database, rpps: str) -> None:
    """What a re-import does to a practitioner who left the register: gone from the live
    table, listed as disappeared in the change report."""
    now = datetime.now(UTC)
    async with db.sessions.begin() as session:
        row = (
            await session.execute(
                sa.text("SELECT first_name, last_name FROM directory_practitioner WHERE rpps = :r"),
                {"r": rpps},
            )
        ).one()
        import_id = await session.scalar(
            sa.text(
                "INSERT INTO directory_import (source, format, started_at, finished_at, lines, "
                "records, practitioners, errors, warnings, new_count, changed_count, "
                "disappeared_count, initial) VALUES ('test', 'rpps', :t, :t, 0, 0, 0, 0, 0, 0, "
                "0, 1, false) RETURNING id"
            ),
            {"t": now},
        )
        await session.execute(
            sa.text(
                "INSERT INTO directory_change (import_id, kind, rpps, last_name, first_name) "
                "VALUES (:i, 'disappeared', :r, :l, :f)"
            ),
            {"i": import_id, "r": rpps, "l": row.last_name, "f": row.first_name},
        )
        await session.execute(
            sa.text("DELETE FROM directory_practitioner WHERE rpps = :r"), {"r": rpps}
        )


def services_for(
    db: Database, http: aiohttp.ClientSession, *homeservers: Homeserver
) -> AdminServices:
    from bridge.synapse_admin import SynapseAdmin

    return AdminServices(
        db=db,
        homeservers={
            hs.server_name: SynapseAdmin(http, hs.client_url, hs.admin_token) for hs in homeservers
        },
        default_server=homeservers[0].server_name,
        public_url=PUBLIC_URL,
    )


def secret_of(activation_url: str) -> str:
    assert activation_url.startswith(PUBLIC_URL + "/activate?token=")
    return activation_url.rpartition("=")[2]


def write_register(folder: Path, people: list[tuple[str, str, str]]) -> Path:
    """A register extract listing exactly `people` (rpps, LAST, FIRST), one activity each."""
    from tests.bench.rpps_synth import FixedPractitioner, generate

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"extract-{uuid.uuid4().hex[:6]}.txt"
    fixed = [
        FixedPractitioner(r, last, first, "F", "10", "SM04", "69382") for r, last, first in people
    ]
    generate(path, lines=len(fixed), fixed=fixed)
    return path


async def import_register(db: Database, folder: Path, people: list[tuple[str, str, str]]) -> None:
    """Import that extract with the real importer: the directory's tables, search index and
    change report as in production."""
    from bridge.directory.importer import import_directory

    # Tests shrink the register on purpose: past the import's safety valve.
    await import_directory(db, write_register(folder, people), max_shrink=None)
