"""Backup and restore of the deployment's files, without PostgreSQL (no databases named).

The federation's signing key survives byte for byte (0600), a backup taken before the bridge
ever ran says the key is not there yet and goes on, the media store is streamed into the
archive with its modes and comes back with them, `--no-media` leaves it out, and restore
checks every destination before extracting anything. Synapse keeps running during a backup:
media it deletes meanwhile is counted and left out, not a failed backup. A media store or
secret that is a symlink is archived with its contents. `tests/test_deploy_topology.py` does
the same with the real processes and databases.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tarfile
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bridge.registry.keys import fingerprint_of, load, load_or_create
from deploy.production.backup import MANIFEST_NAME, BackupError
from deploy.production.cli import deploy_app
from tests.backup_support import (
    IDENTITY,
    MEDIA_FILE,
    RECIPIENT,
    Install,
    backup,
    open_archive,
    restore,
)
from tests.backup_support import make_install as _install
from tests.backup_support import populate as _populate


@pytest.fixture
def identity_file(tmp_path: Path) -> Path:
    path = tmp_path / "backup-key.txt"
    path.write_text(f"# public key: {RECIPIENT}\n{IDENTITY}\n")
    os.chmod(path, 0o600)
    return path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def source(tmp_path: Path) -> Install:
    install = _install(tmp_path / "old")
    _populate(install)
    return install


def test_federation_key_and_media_survive_backup_and_restore(
    source: Install, tmp_path: Path
) -> None:
    result = backup(source.manifest(), tmp_path / "backups")
    assert result.warnings == []
    assert _mode(result.archive) == 0o600 and result.size == result.archive.stat().st_size
    with open_archive(result.archive) as tar:
        names = tar.getnames()
        assert names[0] == MANIFEST_NAME  # restore checks before reading the rest
        media_member = tar.getmember(f"media/synapse_media_store/{MEDIA_FILE}")
        assert media_member.mode == 0o644  # archive members keep their modes
        assert tar.getmember("paths/bridge_federation_key").mode == 0o600

    target = _install(tmp_path / "new")
    done = restore(result.archive, target.manifest())
    assert f"file bridge_federation_key -> {target.federation_key}" in done.restored
    assert f"media synapse_media_store -> {target.media}" in done.restored
    assert done.notes == []

    assert target.federation_key.read_bytes() == source.federation_key.read_bytes()
    assert _mode(target.federation_key) == 0o600
    # the bridge accepts it (it refuses a key others can read) and signs with the same key
    assert fingerprint_of(load(target.federation_key)) == fingerprint_of(
        load(source.federation_key)
    )
    for relative in (MEDIA_FILE, "local_thumbnails/ab/t.png"):
        restored = target.media / relative
        assert restored.read_bytes() == (source.media / relative).read_bytes()
        assert _mode(restored) == _mode(source.media / relative)
    # secrets are private whatever their mode was
    assert _mode(target.bot_store / "crypto.db") == 0o600
    assert _mode(target.bot_store) == 0o700
    assert _mode(target.synapse_key) == 0o600


def test_backup_before_the_bridge_ever_ran_says_the_key_is_not_there_yet(
    tmp_path: Path, identity_file: Path
) -> None:
    install = _install(tmp_path / "old")
    _populate(install, bridge_ran=False)
    runner = CliRunner()
    args = ["backup", "--config", str(install.manifest_path), "--out", str(tmp_path / "b")]
    args += ["--recipient", RECIPIENT]
    result = runner.invoke(deploy_app, args)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "Warning: bridge_federation_key" in result.stderr
    assert "is not there yet: the bridge creates it at its first start" in result.stderr
    (archive,) = (tmp_path / "b").glob("caducee-backup-*.tar.age")
    with open_archive(archive) as tar:
        assert not any(name.startswith("paths/bridge_federation_key") for name in tar.getnames())

    target = _install(tmp_path / "new")
    result = runner.invoke(
        deploy_app,
        ["restore", str(archive), "--config", str(target.manifest_path), "-i", str(identity_file)],
    )
    assert result.exit_code == 0, result.output
    assert "Note: bridge_federation_key: not in this archive" in result.stdout
    assert "will be created anew" in result.stdout
    assert not target.federation_key.exists()
    assert (target.media / MEDIA_FILE).is_file()


def test_no_media_leaves_the_media_store_out(
    source: Install, tmp_path: Path, identity_file: Path
) -> None:
    runner = CliRunner()
    out = tmp_path / "b"
    args = ["backup", "--config", str(source.manifest_path), "--out", str(out), "--no-media"]
    args += ["-r", RECIPIENT]
    result = runner.invoke(deploy_app, args)
    assert result.exit_code == 0, result.output
    assert "synapse_media_store" in result.stderr and "--no-media" in result.stderr
    (archive,) = out.glob("caducee-backup-*.tar.age")
    with open_archive(archive) as tar:
        names = tar.getnames()
        contents = json.load(tar.extractfile(MANIFEST_NAME))  # type: ignore[arg-type]
    assert not any(name.startswith("media/") for name in names)
    assert "paths/bridge_federation_key" in names
    assert contents["media_left_out"] == ["synapse_media_store"]

    target = _install(tmp_path / "new")
    result = runner.invoke(
        deploy_app,
        ["restore", str(archive), "--config", str(target.manifest_path), "-i", str(identity_file)],
    )
    assert result.exit_code == 0, result.output
    assert "taken with --no-media" in result.stdout
    assert list(target.media.iterdir()) == []
    assert target.federation_key.read_bytes() == source.federation_key.read_bytes()


def test_media_is_streamed_not_loaded_in_memory(source: Install, tmp_path: Path) -> None:
    big = source.media / "local_content" / "zz" / "big"
    big.parent.mkdir(parents=True)
    chunk = os.urandom(1024 * 1024)
    with big.open("wb") as handle:
        for _ in range(24):
            handle.write(chunk)
    del chunk
    tracemalloc.start()
    try:
        result = backup(source.manifest(), tmp_path / "b")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.size > 24 * 1024 * 1024  # random bytes do not compress
    assert peak < 4 * 1024 * 1024, peak


def test_restore_checks_every_destination_before_extracting(
    source: Install, tmp_path: Path
) -> None:
    archive = backup(source.manifest(), tmp_path / "b").archive
    target = _install(tmp_path / "new")
    (target.media / "already-there").write_text("x")
    with pytest.raises(BackupError, match=r"synapse_media_store: .* is not empty"):
        restore(archive, target.manifest())
    assert not target.synapse_key.exists()
    assert not target.federation_key.exists()
    assert list(target.bot_store.iterdir()) == []
    assert not list(target.root.rglob(".caducee-restore-*"))


def test_restore_replaces_a_key_a_bridge_started_too_early_made(
    source: Install, tmp_path: Path
) -> None:
    archive = backup(source.manifest(), tmp_path / "b").archive
    target = _install(tmp_path / "new")
    early = load_or_create(target.federation_key)
    restore(archive, target.manifest())
    assert target.federation_key.read_bytes() == source.federation_key.read_bytes()
    kept = target.federation_key.with_name("federation.signing.key.before-restore")
    assert fingerprint_of(load(kept)) == fingerprint_of(early)


def test_unencrypted_archives_of_earlier_versions_are_refused_not_trusted(
    source: Install, tmp_path: Path
) -> None:
    """Plain tar.gz archives carry no checksums: nothing proves they are intact."""
    archive = tmp_path / "old.tar.gz"
    contents = {"format": 1, "created": "x", "databases": [], "paths": {"bot_store": "dir"}}
    data = tmp_path / MANIFEST_NAME
    data.write_text(json.dumps(contents))
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(data, arcname=MANIFEST_NAME)
        tar.add(source.bot_store, arcname="paths/bot_store")
    target = _install(tmp_path / "new")
    with pytest.raises(BackupError, match="unencrypted archive from an earlier version"):
        restore(archive, target.manifest())
    assert list(target.bot_store.iterdir()) == []


def test_a_missing_media_store_is_an_error_not_an_empty_backup(
    source: Install, tmp_path: Path
) -> None:
    os.rename(source.media, source.root / "elsewhere")
    with pytest.raises(BackupError, match=r"synapse_media_store: .* is not a folder"):
        backup(source.manifest(), tmp_path / "b")
    assert not list((tmp_path / "b").glob("*.tar.gz"))


class _Listing(list[Any]):
    """What `os.scandir` returns, already read: usable in a `with` block."""

    def __enter__(self) -> _Listing:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def close(self) -> None:
        return None


def _vanish_after_listing(monkeypatch: pytest.MonkeyPatch, victims: dict[Path, Path]) -> None:
    """Once folder `F` has been listed (by whatever means), `victims[F]` is deleted.

    What Synapse's media retention does while a backup runs, at the worst moment: the backup
    has seen the name, the file or folder is gone when it gets to read it.
    """
    real_scandir, real_listdir = os.scandir, os.listdir

    def listed(path: object) -> None:
        if not isinstance(path, (str, os.PathLike)):
            return  # a file descriptor (shutil.rmtree)
        victim = victims.pop(Path(path), None)
        if victim is None:
            return
        if victim.is_dir():
            shutil.rmtree(victim)
        else:
            victim.unlink()

    def scandir(path: Any = ".") -> Any:
        if not isinstance(path, (str, os.PathLike)) or Path(path) not in victims:
            return real_scandir(path)
        with real_scandir(path) as listing:
            entries = _Listing(listing)
        listed(path)
        return entries

    def listdir(path: Any = ".") -> list[Any]:
        names = real_listdir(path)
        listed(path)
        return names

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "listdir", listdir)


def test_media_synapse_deletes_during_the_backup_is_counted_not_fatal(
    source: Install, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = source.media / "local_content" / "ab" / "cd" / "kept"
    kept.write_bytes(b"still there")
    media_file = source.media / MEDIA_FILE
    _vanish_after_listing(
        monkeypatch,
        {
            media_file.parent: media_file,
            source.media / "local_thumbnails": source.media / "local_thumbnails" / "ab",
        },
    )
    out = tmp_path / "b"
    args = ["backup", "--config", str(source.manifest_path), "--out", str(out)]
    result = CliRunner().invoke(deploy_app, args, env={"CADUCEE_BACKUP_RECIPIENT": RECIPIENT})
    assert result.exit_code == 0, result.output
    warning = (
        "Warning: 2 media file(s) vanished during the backup (deleted by Synapse's media "
        "retention); not in the archive"
    )
    assert result.stderr.splitlines() == [warning]
    (archive,) = out.glob("caducee-backup-*.tar.age")
    with open_archive(archive) as tar:
        names = tar.getnames()
    prefix = "media/synapse_media_store"
    assert f"{prefix}/local_content/ab/cd/kept" in names
    assert f"{prefix}/{MEDIA_FILE}" not in names
    assert f"{prefix}/local_thumbnails" in names
    assert not any(name.startswith(f"{prefix}/local_thumbnails/") for name in names)
    assert "paths/bridge_federation_key" in names

    target = _install(tmp_path / "new")
    restore(archive, target.manifest())
    assert (target.media / "local_content" / "ab" / "cd" / "kept").read_bytes() == b"still there"
    assert target.federation_key.read_bytes() == source.federation_key.read_bytes()


def test_a_secret_that_vanishes_during_the_backup_fails_it(
    source: Install, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _vanish_after_listing(monkeypatch, {source.bot_store: source.bot_store / "crypto.db"})
    with pytest.raises(BackupError, match=r"^bot_store: .*crypto\.db vanished during the backup"):
        backup(source.manifest(), tmp_path / "b")
    assert not list((tmp_path / "b").glob("*.tar.gz"))


def test_symlinked_media_store_and_secrets_are_archived_with_their_contents(
    source: Install, tmp_path: Path
) -> None:
    """systemd hosts: `media_store -> /srv/media`, keys and stores kept on another disk."""
    srv = tmp_path / "srv"
    srv.mkdir()
    for path in (source.media, source.bot_store, source.synapse_key):
        moved = srv / path.name
        os.rename(path, moved)
        path.symlink_to(moved)
    result = backup(source.manifest(), tmp_path / "b")
    assert result.warnings == []
    with open_archive(result.archive) as tar:
        members = {member.name: member for member in tar.getmembers()}
    assert not any(member.issym() for member in members.values())
    assert members["media/synapse_media_store"].isdir()
    assert members[f"media/synapse_media_store/{MEDIA_FILE}"].isreg()
    assert members["paths/bot_store"].isdir()
    assert members["paths/bot_store/crypto.db"].isreg()
    assert members["paths/synapse_signing_key"].isreg()

    # restored into a deployment whose media store is a symlink too
    target = _install(tmp_path / "new")
    real_media = tmp_path / "srv-new" / "media"
    real_media.mkdir(parents=True)
    target.media.rmdir()
    target.media.symlink_to(real_media)
    restore(result.archive, target.manifest())
    assert target.media.is_symlink()
    for relative in (MEDIA_FILE, "local_thumbnails/ab/t.png"):
        assert (real_media / relative).read_bytes() == (srv / "media_store" / relative).read_bytes()
    assert (target.bot_store / "crypto.db").read_bytes() == b"olm sessions"
    assert target.synapse_key.read_text() == "ed25519 a_xyz c2VjcmV0\n"


def test_links_and_special_files_inside_the_media_store_are_not_followed(
    source: Install, tmp_path: Path
) -> None:
    secret = source.root / "bot" / "secrets" / "pickle-key"
    (source.media / "outside").symlink_to(secret)  # would carry a secret out with the media
    (source.media / "local_content" / "inside").symlink_to("ab")
    os.mkfifo(source.media / "fifo")  # would block the backup if it were read
    result = backup(source.manifest(), tmp_path / "b")
    assert result.warnings == [
        "3 symlink(s) or special file(s) in the media store not followed; not in the archive"
    ]
    with open_archive(result.archive) as tar:
        names = tar.getnames()
    for name in ("outside", "local_content/inside", "fifo"):
        assert f"media/synapse_media_store/{name}" not in names
    assert f"media/synapse_media_store/{MEDIA_FILE}" in names

    target = _install(tmp_path / "new")
    restore(result.archive, target.manifest())
    assert (target.media / MEDIA_FILE).read_bytes() == (source.media / MEDIA_FILE).read_bytes()
    assert sorted(path.name for path in target.media.iterdir()) == [
        "local_content",
        "local_thumbnails",
    ]


def test_media_folders_come_back_with_their_modes(source: Install, tmp_path: Path) -> None:
    # modes a media store may have: group-readable, private, group-writable
    os.chmod(source.media / "local_content" / "ab", 0o750)  # noqa: S103
    os.chmod(source.media / "local_thumbnails", 0o700)
    os.chmod(source.media / "local_thumbnails" / "ab", 0o775)  # noqa: S103
    archive = backup(source.manifest(), tmp_path / "b").archive
    target = _install(tmp_path / "new")
    restore(archive, target.manifest())
    assert _mode(target.media / "local_content" / "ab") == 0o750
    assert _mode(target.media / "local_thumbnails") == 0o700
    assert _mode(target.media / "local_thumbnails" / "ab") == 0o755  # write: the owner's alone
    assert _mode(target.media) == 0o700  # the folder the deployment prepared keeps its mode


def test_restore_never_overwrites_an_earlier_before_restore_copy(
    source: Install, tmp_path: Path
) -> None:
    archive = backup(source.manifest(), tmp_path / "b").archive
    target = _install(tmp_path / "new")
    earlier = target.federation_key.with_name("federation.signing.key.before-restore")
    earlier.write_bytes(b"the copy an earlier restore kept")
    early = load_or_create(target.federation_key)
    restore(archive, target.manifest())
    assert target.federation_key.read_bytes() == source.federation_key.read_bytes()
    assert earlier.read_bytes() == b"the copy an earlier restore kept"
    (kept,) = target.federation_key.parent.glob("federation.signing.key.before-restore-*")
    assert fingerprint_of(load(kept)) == fingerprint_of(early)
