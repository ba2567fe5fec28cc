"""Backups against real PostgreSQL: exactly the same data back, or nothing changed at all.

Three databases (as synapse, bridge and bot) with rows, the keys, the bot's store and the media
of a deployment are backed up, then restored into fresh databases and empty folders. Every way
an archive can be damaged (a byte changed at several places, a cut end, a member missing, the
wrong key) is refused before anything is touched; a failure injected in the middle of a
restore (the third database, or the third step of the switch) leaves every database and every
folder exactly as before, with no database or scratch folder left over.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from typer.testing import CliRunner

from deploy.production import backup_pg
from deploy.production import restore as restore_module
from deploy.production.backup_model import BackupError, PgTarget
from deploy.production.cli import deploy_app
from tests.backup_support import (
    IDENTITY,
    RECIPIENT,
    Install,
    backup,
    make_install,
    populate,
    restore,
    rewrite,
)
from tests.bot_commands_support import postgres_admin_url

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
NAMES = ("synapse", "bridge", "bot")


class Cluster:
    """The test PostgreSQL server, through the same client tools the product uses."""

    def __init__(self) -> None:
        parts = urlsplit(postgres_admin_url())
        self.admin = PgTarget.from_url(parts._replace(path="/postgres").geturl())
        self.prefix = f"cadbk_{uuid.uuid4().hex[:8]}"

    def url(self, dbname: str) -> str:
        auth = self.admin.user + (f":{self.admin.password}" if self.admin.password else "")
        return f"postgresql://{auth}@{self.admin.host}:{self.admin.port}/{dbname}"

    def sql(self, command: str, dbname: str = "postgres") -> str:
        return backup_pg.sql(self.admin, command, "test", dbname)

    def create(self, dbname: str) -> None:
        self.sql(
            f"CREATE DATABASE \"{dbname}\" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' "
            "TEMPLATE template0"
        )

    def ours(self) -> list[str]:
        query = f"SELECT datname FROM pg_database WHERE datname LIKE '{self.prefix}%'"  # noqa: S608
        rows = self.sql(query)
        return sorted(rows.split()) if rows else []

    def snapshot(self, dbname: str) -> str:
        """Every table's rows, in order: equal snapshots mean equal data."""
        tables = self.sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1", dbname
        ).split()
        out = [
            table + ":" + self.sql(f'SELECT * FROM "{table}" ORDER BY 1', dbname)  # noqa: S608
            for table in tables
        ]
        return "\n".join(out)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    cluster = Cluster()
    try:
        cluster.sql("SELECT 1")
    except BackupError as exc:
        pytest.skip(f"no PostgreSQL server answers for {postgres_admin_url()}: {exc}")
    yield cluster
    for name in cluster.ours():
        cluster.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _with_databases(install: Install, cluster: Cluster, tag: str, *, rows: bool) -> dict[str, str]:
    """Create the three databases of `install` (with rows if `rows`); name them in its manifest."""
    names = {name: f"{cluster.prefix}_{tag}_{name}" for name in NAMES}
    for name, dbname in names.items():
        cluster.create(dbname)
        if rows:
            cluster.sql(
                f"CREATE TABLE {name}_events (id int PRIMARY KEY, body text, data bytea);"  # noqa: S608
                f"INSERT INTO {name}_events SELECT i, 'événement ' || i, "
                "decode(md5(i::text), 'hex') FROM generate_series(1, 500) i",
                dbname,
            )
    data = yaml.safe_load(install.manifest_path.read_text())
    data["databases"] = {name: cluster.url(dbname) for name, dbname in names.items()}
    install.manifest_path.write_text(yaml.safe_dump(data))
    return names


def _files(root: Path) -> dict[str, tuple[str, int]]:
    """Every file and folder under `root`: content hash and mode, to compare before and after."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        out[str(path.relative_to(root))] = (digest, st.st_mode)
    return out


@pytest.fixture(scope="module")
def source(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One backed-up deployment with data in its three databases."""
    root = tmp_path_factory.mktemp("pg-backup")
    install = make_install(root / "old")
    populate(install)
    names = _with_databases(install, cluster, "old", rows=True)
    result = backup(install.manifest(), root / "backups")
    return {"install": install, "names": names, "archive": result.archive, "root": root}


def _fresh(cluster: Cluster, root: Path) -> Install:
    """A fresh deployment: empty databases, empty folders, a signing key render made."""
    install = make_install(root)
    _with_databases(install, cluster, f"new{uuid.uuid4().hex[:6]}", rows=False)
    install.synapse_key.write_text("ed25519 a_new fresh\n")
    return install


@pytest.fixture(scope="module")
def target(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Install:
    """One fresh deployment for every refused or failed restore: each must leave it as it was
    (and each test checks that it did, so a test that changed it would fail the next ones)."""
    return _fresh(cluster, tmp_path_factory.mktemp("pg-target") / "new")


def _state(cluster: Cluster, install: Install) -> tuple[list[str], dict[str, str], Any]:
    manifest = install.manifest()
    dbnames = [PgTarget.from_url(url).dbname for url in manifest.databases.values()]
    return cluster.ours(), {n: cluster.snapshot(n) for n in dbnames}, _files(install.root)


def test_restore_brings_back_every_database_row_and_file_exactly(
    cluster: Cluster, source: dict[str, Any], tmp_path: Path
) -> None:
    target = _fresh(cluster, tmp_path / "new")
    before = cluster.ours()
    done = restore(source["archive"], target.manifest())
    assert {line.split(" ->")[0] for line in done.restored[:3]} == {
        f"database {name}" for name in NAMES
    }
    new_names = {
        name: PgTarget.from_url(url).dbname for name, url in target.manifest().databases.items()
    }
    for name in NAMES:
        assert cluster.snapshot(new_names[name]) == cluster.snapshot(source["names"][name])
        assert "événement 500" in cluster.snapshot(new_names[name])
    # no temporary or set-aside database left
    assert cluster.ours() == before
    old: Install = source["install"]
    for relative in ("synapse/signing.key", "bot/store/crypto.db", "bridge/federation.signing.key"):
        assert (target.root / relative).read_bytes() == (old.root / relative).read_bytes()
    assert (
        target.root / "synapse/signing.key.before-restore"
    ).read_text() == "ed25519 a_new fresh\n"
    assert not list(target.root.rglob(".caducee-restore-*"))


def _flip(archive: Path, where: float | int, out: Path) -> Path:
    """`where`: a byte offset (int) or a fraction of the archive's length (float)."""
    data = bytearray(archive.read_bytes())
    offset = where if isinstance(where, int) else min(int(len(data) * where), len(data) - 1)
    data[offset] ^= 0x01
    out.write_bytes(bytes(data))
    return out


# the age header (version line, recipient stanza, its MAC), then the payload from start to end
OFFSETS: list[float | int] = [0, 30, 100, 0.01, 0.1, 0.5, 0.9, 0.99, 1.0]


def test_a_byte_changed_anywhere_is_refused_and_nothing_changes(
    cluster: Cluster, source: dict[str, Any], target: Install, tmp_path: Path
) -> None:
    before = _state(cluster, target)
    for where in OFFSETS:
        damaged = _flip(source["archive"], where, tmp_path / f"damaged-{where}.tar.age")
        with pytest.raises(BackupError, match="nothing was changed"):
            restore(damaged, target.manifest())
        assert _state(cluster, target) == before, where


def test_a_truncated_archive_is_refused_and_nothing_changes(
    cluster: Cluster, source: dict[str, Any], target: Install, tmp_path: Path
) -> None:
    data = source["archive"].read_bytes()
    before = _state(cluster, target)
    for keep in (len(data) - 1, len(data) - 20, len(data) - 70_000, len(data) // 2):
        truncated = tmp_path / f"cut-{keep}.tar.age"
        truncated.write_bytes(data[:keep])
        with pytest.raises(BackupError, match=r"damaged or truncated.*nothing was changed"):
            restore(truncated, target.manifest())
        assert _state(cluster, target) == before, keep


def test_the_wrong_key_is_refused_and_nothing_changes(
    cluster: Cluster, source: dict[str, Any], target: Install, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong-key.txt"
    assert CliRunner().invoke(deploy_app, ["backup-key", "--out", str(wrong)]).exit_code == 0
    before = _state(cluster, target)
    args = ["restore", str(source["archive"]), "--config", str(target.manifest_path)]
    result = CliRunner().invoke(deploy_app, [*args, "--identity", str(wrong)])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and "wrong key" in result.stderr
    assert "Traceback" not in result.output
    assert _state(cluster, target) == before


def test_a_missing_database_dump_is_refused_and_nothing_changes(
    cluster: Cluster, source: dict[str, Any], target: Install, tmp_path: Path
) -> None:
    lacking = rewrite(source["archive"], tmp_path / "lacking.tar.age", drop="databases/bot.dump")
    before = _state(cluster, target)
    with pytest.raises(BackupError, match=r"missing: databases/bot\.dump"):
        restore(lacking, target.manifest())
    assert _state(cluster, target) == before


def test_a_failure_at_the_third_database_leaves_everything_as_before(
    cluster: Cluster,
    source: dict[str, Any],
    target: Install,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = backup_pg.restore_into
    calls: list[str] = []

    def third_fails(staged: backup_pg.Staged, dump: Path) -> None:
        calls.append(staged.name)
        if len(calls) == 3:
            raise BackupError(f"pg_restore of the {staged.name} database failed: injected")
        real(staged, dump)

    monkeypatch.setattr(backup_pg, "restore_into", third_fails)
    before = _state(cluster, target)
    with pytest.raises(BackupError, match=r"injected.*Nothing was changed"):
        restore(source["archive"], target.manifest())
    assert len(calls) == 3
    assert _state(cluster, target) == before  # no new database left, files untouched


@pytest.mark.parametrize("step", [4, 12])  # a database rename; a file move
def test_a_failure_while_switching_into_place_is_undone(
    cluster: Cluster,
    source: dict[str, Any],
    target: Install,
    monkeypatch: pytest.MonkeyPatch,
    step: int,
) -> None:
    """Database renames and file moves share one journal: any step failing undoes the others."""
    real_rename, real_move = backup_pg.rename, restore_module._move
    count = [0]

    def counted(real: Any) -> Any:
        def step_of_switch(*args: Any) -> None:
            count[0] += 1
            if count[0] == step:
                raise OSError(28, "No space left on device (injected)")
            real(*args)

        return step_of_switch

    monkeypatch.setattr(backup_pg, "rename", counted(real_rename))
    monkeypatch.setattr(restore_module, "_move", counted(real_move))
    before = _state(cluster, target)
    with pytest.raises(BackupError, match=r"switching into place failed.*Nothing was changed"):
        restore(source["archive"], target.manifest())
    assert _state(cluster, target) == before


def test_verify_reads_the_whole_archive_and_touches_nothing(
    cluster: Cluster, source: dict[str, Any], tmp_path: Path
) -> None:
    key = tmp_path / "key.txt"
    key.write_text(f"{IDENTITY}\n")
    os.chmod(key, 0o600)
    folder = source["archive"].parent
    listing = sorted(os.listdir(folder))
    databases = cluster.ours()
    result = CliRunner().invoke(deploy_app, ["verify", str(source["archive"]), "-i", str(key)])
    assert result.exit_code == 0, result.output
    assert "intact" in result.stdout and "databases: bot, bridge, synapse" in result.stdout
    assert sorted(os.listdir(folder)) == listing and cluster.ours() == databases
    assert RECIPIENT.startswith("age1")
