"""The PostgreSQL side of backups: dump, restore into a new database, switch names.

Every call goes through the PostgreSQL client tools (`pg_dump`, `pg_restore`, `psql`), the
password in the environment. A restore never writes into the deployment's databases: it
creates a new database with the same encoding, collation and owner, restores into it, and
only once every part of the restore succeeded swaps the names (`switch_in`). Creating and
renaming databases needs the deployment's role to own its databases and hold CREATEDB (as
the compose deployment's role does).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from deploy.production.backup_model import BackupError, PgTarget

MAINTENANCE_DB = "postgres"  # where CREATE/ALTER/DROP DATABASE run from


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def run(args: list[str], target: PgTarget, what: str) -> str:
    try:
        result = subprocess.run(
            args, env=target.env(), capture_output=True, text=True, check=False, timeout=3600
        )
    except FileNotFoundError:
        raise BackupError(f"{args[0]} not found: install the PostgreSQL client tools") from None
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()[-3:]
        raise BackupError(f"{what} failed: " + " / ".join(detail))
    return result.stdout


def sql(target: PgTarget, command: str, what: str, dbname: str | None = None) -> str:
    args = [
        "psql",
        *target.args(dbname),
        "--no-psqlrc",
        "--tuples-only",
        "--no-align",
        "--set=ON_ERROR_STOP=1",
        f"--command={command}",
    ]
    return run(args, target, what).strip()


def dump(target: PgTarget, name: str, file: Path) -> None:
    args = [
        "pg_dump",
        *target.args(),
        "--format=custom",
        "--no-owner",
        "--no-privileges",
        f"--file={file}",
    ]
    run(args, target, f"pg_dump of the {name} database")


def is_empty(target: PgTarget, name: str) -> bool:
    count = sql(
        target,
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
        f"checking the {name} database ({target.dbname})",
    )
    return count == "0"


@dataclass(frozen=True)
class Staged:
    """A database restored under a temporary name, not yet in place."""

    name: str  # the manifest's name (synapse, bridge, bot)
    target: PgTarget  # the deployment's database
    temporary: str  # where the archive was restored
    aside: str  # the name the deployment's (empty) database takes during the switch


def create_like(target: PgTarget, name: str, temporary: str) -> None:
    """A new database `temporary` with the encoding, collation and owner of `target`."""
    row = sql(
        target,
        "SELECT pg_encoding_to_char(encoding), datcollate, datctype, "  # noqa: S608 - quoted
        "pg_get_userbyid(datdba) FROM pg_database WHERE datname = " + literal(target.dbname),
        f"reading the settings of the {name} database ({target.dbname})",
        MAINTENANCE_DB,
    )
    if not row:
        raise BackupError(
            f"the {name} database ({target.dbname}) does not exist: create it empty first "
            "(see deploy/README.md, Restore)"
        )
    encoding, collate, ctype, owner = row.split("|")
    sql(
        target,
        f"CREATE DATABASE {ident(temporary)} TEMPLATE template0 ENCODING {literal(encoding)} "
        f"LC_COLLATE {literal(collate)} LC_CTYPE {literal(ctype)} OWNER {ident(owner)}",
        f"creating a new database for {name}",
        MAINTENANCE_DB,
    )


def restore_into(staged: Staged, dump_file: Path) -> None:
    target = replace(staged.target, dbname=staged.temporary)
    args = [
        "pg_restore",
        *target.args(),
        "--no-owner",
        "--no-privileges",
        "--exit-on-error",
        "--single-transaction",
        str(dump_file),
    ]
    run(args, target, f"pg_restore of the {staged.name} database")


def rename(target: PgTarget, old: str, new: str, name: str) -> None:
    sql(
        target,
        f"ALTER DATABASE {ident(old)} RENAME TO {ident(new)}",
        f"renaming the {name} database {old} to {new}",
        MAINTENANCE_DB,
    )


def drop(target: PgTarget, dbname: str, name: str) -> None:
    sql(
        target,
        f"DROP DATABASE IF EXISTS {ident(dbname)}",
        f"dropping {dbname} (the {name} database)",
        MAINTENANCE_DB,
    )
