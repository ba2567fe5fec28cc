"""What a backup archive may hold, and what `verify` and `restore` refuse, without PostgreSQL.

Archives are re-encrypted here with the operator's own recipient, as someone holding the
public key could do: a member removed, added or changed behind the checksum list, a symlink or
a hard link smuggled in (pointing at the signing key), names that climb out of the folder.
Each is refused before anything is written. Backups themselves never write a link, even for
hard-linked media, and a manifest that leaves nothing to save writes no archive at all.
"""

from __future__ import annotations

import os
import re
import signal
import tarfile
from pathlib import Path
from typing import Any

import pyrage
import pytest
from typer.testing import CliRunner

from deploy.production import restore as restore_module
from deploy.production.backup_archive import CHECKSUMS_NAME
from deploy.production.backup_model import BackupError
from deploy.production.cli import deploy_app
from tests.backup_support import (
    IDENTITY,
    MEDIA_FILE,
    RECIPIENT,
    Install,
    backup,
    make_install,
    open_archive,
    populate,
    restore,
    rewrite,
)


@pytest.fixture
def source(tmp_path: Path) -> Install:
    install = make_install(tmp_path / "old")
    populate(install)
    return install


@pytest.fixture
def archive(source: Install, tmp_path: Path) -> Path:
    return backup(source.manifest(), tmp_path / "b").archive


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "key.txt"
    path.write_text(f"{IDENTITY}\n")
    os.chmod(path, 0o600)
    return path


def _tree(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() and not p.is_symlink() else None
        for p in sorted(root.rglob("*"))
    }


def _refused(archive: Path, tmp_path: Path, key: Path, match: str) -> None:
    """`verify` exits 1 with the message, and `restore` changes nothing."""
    result = CliRunner().invoke(deploy_app, ["verify", str(archive), "--identity", str(key)])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: ") and "Traceback" not in result.output
    assert match in result.stderr, result.stderr
    target = make_install(tmp_path / f"target-{archive.stem}")
    before = _tree(target.root)
    with pytest.raises(BackupError, match=re.escape(match)):
        restore(archive, target.manifest())
    assert _tree(target.root) == before


def _info(name: str, **fields: Any) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    for field, value in fields.items():
        setattr(info, field, value)
    return info


# wherever a link is put: the media, a key folder, beside a database dump, or replacing a key
LINK_PLACES = [
    "media/synapse_media_store/evil",
    "paths/bot_store/evil",
    "databases/evil.dump",
    "paths/bot_secrets/pickle-key",
]


@pytest.mark.parametrize("name", LINK_PLACES)
@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_a_link_member_is_refused_wherever_it_is(
    archive: Path, tmp_path: Path, key: Path, name: str, kind: bytes
) -> None:
    """The crafted media file that became a link to the homeserver's signing key, and its kin."""
    target = "paths/synapse_signing_key" if kind == tarfile.LNKTYPE else "../../signing.key"
    link = _info(name, type=kind, linkname=target)
    crafted = rewrite(archive, tmp_path / "link.tar.age", add=[(link, None)], drop=name)
    _refused(crafted, tmp_path, key, "is a link; Caducée backups never hold links")


@pytest.mark.parametrize(
    "name",
    ["media/synapse_media_store/../../escape", "/etc/passwd", "paths/x/./y", "other/file"],
)
def test_a_name_outside_the_layout_is_refused(
    archive: Path, tmp_path: Path, key: Path, name: str
) -> None:
    crafted = rewrite(archive, tmp_path / "name.tar.age", add=[(_info(name, size=1), b"x")])
    _refused(crafted, tmp_path, key, "refused")


def test_special_members_are_refused(archive: Path, tmp_path: Path, key: Path) -> None:
    fifo = _info("media/synapse_media_store/fifo", type=tarfile.FIFOTYPE)
    crafted = rewrite(archive, tmp_path / "fifo.tar.age", add=[(fifo, None)])
    _refused(crafted, tmp_path, key, "is a special file")


def test_a_missing_member_is_refused(archive: Path, tmp_path: Path, key: Path) -> None:
    lacking = rewrite(
        archive, tmp_path / "lacking.tar.age", drop=f"media/synapse_media_store/{MEDIA_FILE}"
    )
    _refused(lacking, tmp_path, key, "member(s) missing")


def test_a_member_not_in_the_checksum_list_is_refused(
    archive: Path, tmp_path: Path, key: Path
) -> None:
    extra = _info("media/synapse_media_store/extra", size=2)
    crafted = rewrite(archive, tmp_path / "extra.tar.age", add=[(extra, b"hi")])
    _refused(crafted, tmp_path, key, "not in its checksum list")


def test_a_changed_member_is_refused(archive: Path, tmp_path: Path, key: Path) -> None:
    changed = rewrite(archive, tmp_path / "changed.tar.age", change="paths/synapse_signing_key")
    _refused(changed, tmp_path, key, "do not match their checksum")


def test_a_missing_checksum_list_is_refused(archive: Path, tmp_path: Path, key: Path) -> None:
    crafted = rewrite(archive, tmp_path / "nolist.tar.age", drop=CHECKSUMS_NAME)
    _refused(crafted, tmp_path, key, "checksum list is missing")


def test_the_wrong_key_and_a_cut_archive_are_refused(
    archive: Path, tmp_path: Path, key: Path
) -> None:
    other = tmp_path / "other.txt"
    assert CliRunner().invoke(deploy_app, ["backup-key", "--out", str(other)]).exit_code == 0
    result = CliRunner().invoke(deploy_app, ["verify", str(archive), "-i", str(other)])
    assert result.exit_code == 1 and "wrong key" in result.stderr
    cut = tmp_path / "cut.tar.age"
    cut.write_bytes(archive.read_bytes()[:-20])
    _refused(cut, tmp_path, key, "damaged or truncated")


def test_hard_linked_media_is_archived_as_two_files_never_a_link(
    source: Install, tmp_path: Path
) -> None:
    media = source.media / MEDIA_FILE
    os.link(media, media.with_name("same-inode"))
    archive = backup(source.manifest(), tmp_path / "b").archive
    with open_archive(archive) as tar:
        members = tar.getmembers()
    assert all(member.isreg() or member.isdir() for member in members)
    target = make_install(tmp_path / "new")
    restore(archive, target.manifest())
    copy = target.media / MEDIA_FILE
    assert copy.with_name("same-inode").read_bytes() == copy.read_bytes() == media.read_bytes()


def test_a_link_inside_a_secret_stops_the_backup(source: Install, tmp_path: Path) -> None:
    (source.bot_store / "elsewhere").symlink_to("/etc/hostname")
    with pytest.raises(BackupError, match="is a link or a special file"):
        backup(source.manifest(), tmp_path / "b")
    assert not list((tmp_path / "b").glob("*.tar.age"))


def test_nothing_to_back_up_is_an_error_and_writes_no_archive(tmp_path: Path) -> None:
    manifest = tmp_path / "deployment.yaml"
    manifest.write_text(
        "databases: {}\npaths: {}\noptional_paths:\n"
        f"  key: {{path: {tmp_path / 'absent'}, absent: later}}\n"
    )
    out = tmp_path / "backups"
    args = ["backup", "--config", str(manifest), "--out", str(out), "-r", RECIPIENT]
    result = CliRunner().invoke(deploy_app, args)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: nothing to back up")
    assert not out.exists()


def test_a_backup_without_recipient_is_a_usage_error(source: Install, tmp_path: Path) -> None:
    args = ["backup", "--config", str(source.manifest_path), "--out", str(tmp_path / "b")]
    result = CliRunner().invoke(deploy_app, args, env={"CADUCEE_BACKUP_RECIPIENT": ""})
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: no backup recipient")
    assert not (tmp_path / "b").exists()


def test_an_archive_is_unreadable_without_the_identity(archive: Path, source: Install) -> None:
    """Encrypted: no key, no name, no byte of the secrets in clear."""
    data = archive.read_bytes()
    assert data.startswith(b"age-encryption.org/v1\n")
    for secret in (source.synapse_key.read_bytes(), b"olm sessions", b"synapse_signing_key"):
        assert secret not in data
    assert (archive.stat().st_mode & 0o777) == 0o600


def test_backup_key_writes_a_private_identity_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "k.txt"
    first = CliRunner().invoke(deploy_app, ["backup-key", "--out", str(path)])
    assert first.exit_code == 0 and "age1" in first.stdout
    assert (path.stat().st_mode & 0o777) == 0o600
    content = path.read_text()
    again = CliRunner().invoke(deploy_app, ["backup-key", "--out", str(path)])
    assert again.exit_code == 2 and path.read_text() == content


@pytest.mark.parametrize("media_size", [0, 2 * 1024 * 1024])  # the end; or mid-stream
def test_a_full_disk_while_writing_leaves_no_archive(
    source: Install, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, media_size: int
) -> None:
    (source.media / "big").write_bytes(os.urandom(media_size))

    def encrypt_io(reader: Any, writer: Any, recipients: Any) -> None:
        writer.write(b"age-encryption.org/v1\n")
        reader.read(4096)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pyrage, "encrypt_io", encrypt_io)
    with pytest.raises(BackupError, match="No space left on device; no archive written"):
        backup(source.manifest(), tmp_path / "b")
    assert list((tmp_path / "b").iterdir()) == []


def test_a_stop_request_in_the_middle_of_the_switch_puts_everything_back(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`docker stop` or systemd's SIGTERM half-way through moving files into place."""
    target = make_install(tmp_path / "new")
    target.synapse_key.write_text("the key init made\n")
    before = _tree(target.root)
    real_move = restore_module._move
    moves = [0]

    def move(source: Path, dest: Path) -> None:
        moves[0] += 1
        if moves[0] == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        real_move(source, dest)

    monkeypatch.setattr(restore_module, "_move", move)
    with pytest.raises(BackupError, match=r"^interrupted\. Nothing was changed"):
        restore(archive, target.manifest())
    assert moves[0] > 3  # some moves were done, then undone
    assert _tree(target.root) == before
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
