"""Backups an operator can restore: the databases, the keys, the bot's crypto store, the media.

One archive per run (`backup_archive`: age-encrypted to the operator's recipients, every member
checksummed, mode 0600), with `pg_dump --format=custom` of each PostgreSQL database and the
files and folders the manifest (`deployment.yaml`, rendered next to the configuration) names:
Synapse's signing key, the bot's crypto store (Olm/Megolm sessions, cross-signing keys, pinned
identities) and its pickle key, the bridge's federation signing key, and Synapse's media store
(attachments, encrypted by the clients). Without the crypto store and its pickle key the
restored bot would be a new device that cannot read any earlier message; without Synapse's
signing key other homeservers would see a new server; without the federation key every peer
federation would refuse the federation's manifest until its admins pin a new fingerprint.

The federation key is created by the bridge at its first start: a backup taken before then
says so and goes on (nothing to lose yet). A manifest that leaves nothing to save is an error,
and no archive is written. The media store can be large: it is streamed into the archive file
by file, never held in memory, and `include_media=False` (`--no-media`) leaves it out for
operators who back it up separately. Synapse keeps running meanwhile and deletes media on its
own schedule (media retention): a media file or folder gone between listing its folder and
reading it is counted and left out, with one warning. Symlinks and special files inside the
media store are not followed out of it: counted and left out too; inside a secret they stop
the backup. A path the manifest names is resolved first, so a media store or secret that is a
symlink (`media_store -> /srv/media`) is archived with its contents, under its usual name.
Archives hold regular files and folders only, each file as itself (never a link).

`restore` (deploy/production/restore.py) puts an archive back, all or nothing.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyrage import x25519

from deploy.production import backup_pg
from deploy.production.backup_archive import FORMAT_VERSION, MANIFEST_NAME, ArchiveWriter
from deploy.production.backup_model import (
    BackupError,
    BackupResult,
    Manifest,
    PgTarget,
)

__all__ = ["MANIFEST_NAME", "BackupError", "Manifest", "backup"]


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _exists(name: str, path: Path) -> bool:
    try:
        path.stat()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise BackupError(f"{name}: cannot read {path}: {exc.strerror or exc}") from None
    return True


def _resolve(name: str, path: Path) -> Path:
    """The real location of `path` (which exists): a symlinked store is archived as its contents."""
    try:
        return path.resolve(strict=True)
    except FileNotFoundError:
        raise BackupError(
            f"{name}: {path} vanished during the backup; no archive written"
        ) from None
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise BackupError(f"{name}: cannot resolve {path}: {exc}") from None


@dataclass
class _Skipped:
    """Media left out of the archive, counted for one warning each at the end."""

    vanished: int = 0  # deleted by Synapse (media retention) while the backup ran
    not_followed: int = 0  # symlinks and special files: nothing a restore could use safely

    def warnings(self) -> list[str]:
        out = []
        if self.vanished:
            out.append(
                f"{self.vanished} media file(s) vanished during the backup (deleted by "
                "Synapse's media retention); not in the archive"
            )
        if self.not_followed:
            out.append(
                f"{self.not_followed} symlink(s) or special file(s) in the media store not "
                "followed; not in the archive"
            )
        return out


_OPEN = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class _Walker:
    """Add a file or a folder tree to the archive: regular files and folders only.

    `lenient` (media): a name gone before it is read is counted as vanished, a link or special
    file as not followed. Otherwise (secrets) either stops the backup.
    """

    def __init__(self, writer: ArchiveWriter, name: str, lenient: bool, skipped: _Skipped):
        self.writer, self.name, self.lenient, self.skipped = writer, name, lenient, skipped

    def _vanished(self, path: str) -> None:
        if not self.lenient:
            raise BackupError(f"{self.name}: {path} vanished during the backup; no archive written")
        self.skipped.vanished += 1

    def _not_followed(self, path: str) -> None:
        if not self.lenient:
            raise BackupError(
                f"{self.name}: {path} is a link or a special file; backups hold regular files "
                "and folders only (no archive written)"
            )
        self.skipped.not_followed += 1

    def add_top(self, top: Path, arcname: str) -> None:
        st = top.stat()
        if stat.S_ISDIR(st.st_mode):
            self.writer.add_dir(arcname, st)
            self._folder(str(top), arcname)
        elif not self._file(str(top), arcname):
            self._not_followed(str(top))

    def _file(self, path: str, arcname: str) -> bool:
        """Add one regular file; False if `path` is not one."""
        try:
            fd = os.open(path, _OPEN)
        except FileNotFoundError:
            self._vanished(path)
            return True
        except OSError as exc:
            if exc.errno != errno.ELOOP:  # ELOOP: replaced by a symlink meanwhile
                raise
            return False
        # Open, the file stays readable even if Synapse deletes it now.
        with os.fdopen(fd, "rb") as handle:
            st = os.fstat(handle.fileno())
            if not stat.S_ISREG(st.st_mode):
                return False
            self.writer.add_file(arcname, handle, st)
        return True

    def _folder(self, top: str, arctop: str) -> None:
        pending = [(top, arctop)]
        while pending:
            folder, arcfolder = pending.pop()
            try:
                with os.scandir(folder) as listing:
                    entries = sorted(listing, key=lambda entry: entry.name)
            except FileNotFoundError:  # its header is in the archive: it comes back empty
                self._vanished(folder)
                continue
            subfolders = []
            for entry in entries:
                arcname = f"{arcfolder}/{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    try:
                        st = os.lstat(entry.path)
                    except FileNotFoundError:
                        self._vanished(entry.path)
                        continue
                    if not stat.S_ISDIR(st.st_mode):  # replaced meanwhile (by a symlink?)
                        self._not_followed(entry.path)
                        continue
                    self.writer.add_dir(arcname, st)
                    subfolders.append((entry.path, arcname))
                elif entry.is_file(follow_symlinks=False):
                    if not self._file(entry.path, arcname):
                        self._not_followed(entry.path)
                elif os.path.lexists(entry.path):
                    self._not_followed(entry.path)
                else:  # is_dir/is_file say False for a name that is gone
                    self._vanished(entry.path)
            pending.extend(reversed(subfolders))


def _what_to_save(
    manifest: Manifest, include_media: bool
) -> tuple[dict[str, Path], dict[str, str], dict[str, Path], list[str]]:
    """(secrets, absent optional secrets, media, warnings), after checking they exist."""
    for name, path in manifest.paths.items():
        if not _exists(name, path):
            raise BackupError(f"{name}: {path} does not exist (is this the right manifest?)")
    warnings = []
    secrets: dict[str, Path] = dict(manifest.paths)
    absent: dict[str, str] = {}
    for name, item in manifest.optional.items():
        if _exists(name, item.path):
            secrets[name] = item.path
            continue
        absent[name] = item.absent
        reason = f": {item.absent}" if item.absent else ""
        warnings.append(
            f"{name}: {item.path} is not there yet{reason}. This archive does not contain it; "
            "take another backup once it exists."
        )
    media: dict[str, Path] = {}
    for name, path in manifest.media.items():
        if not include_media:
            warnings.append(f"{name}: {path} left out (--no-media): back it up separately.")
        elif not path.is_dir():
            raise BackupError(f"{name}: {path} is not a folder (is this the right manifest?)")
        else:
            media[name] = path
    if not manifest.databases and not secrets and not media:
        raise BackupError(
            "nothing to back up: the manifest names no database, and none of its files and "
            "folders exist (or the media were left out); no archive written"
        )
    # A symlinked store (`media_store -> /srv/media`) is archived as its contents.
    secrets = {name: _resolve(name, path) for name, path in secrets.items()}
    media = {name: _resolve(name, path) for name, path in media.items()}
    return secrets, absent, media, warnings


def backup(
    manifest: Manifest,
    out_dir: Path,
    recipients: list[x25519.Recipient],
    *,
    include_media: bool = True,
    now: float | None = None,
) -> BackupResult:
    """Write one archive, encrypted to `recipients`, into `out_dir` (created 0700)."""
    secrets, absent, media, warnings = _what_to_save(manifest, include_media)
    skipped = _Skipped()
    try:
        _private_dir(out_dir)
    except OSError as exc:
        raise BackupError(f"cannot create {out_dir}: {exc.strerror or exc}") from None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    archive = out_dir / f"caducee-backup-{stamp}.tar.age"
    if archive.exists():
        raise BackupError(f"{archive} already exists")
    contents: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "created": stamp,
        "databases": sorted(manifest.databases),
        "paths": {name: "dir" if path.is_dir() else "file" for name, path in secrets.items()},
        "media": {name: "dir" for name in media},
        "absent": absent,
        "media_left_out": [] if include_media else sorted(manifest.media),
    }
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".staging-") as staging:
        stage = Path(staging)
        for name, url in sorted(manifest.databases.items()):
            backup_pg.dump(PgTarget.from_url(url), name, stage / f"{name}.dump")
        try:
            writer = ArchiveWriter(archive, recipients)
        except OSError as exc:
            raise BackupError(f"cannot write {archive}: {exc.strerror or exc}") from None
        try:
            # First, so that a reader knows what to expect before the rest.
            writer.add_bytes(MANIFEST_NAME, json.dumps(contents, indent=2).encode())
            for name in sorted(manifest.databases):
                dump = stage / f"{name}.dump"
                with dump.open("rb") as handle:
                    writer.add_file(f"databases/{name}.dump", handle, os.fstat(handle.fileno()))
            for name, path in sorted(secrets.items()):
                _Walker(writer, name, False, skipped).add_top(path, f"paths/{name}")
            for name, path in sorted(media.items()):
                _Walker(writer, name, True, skipped).add_top(path, f"media/{name}")
            writer.finish()
        except BaseException as exc:
            encrypting = writer.abort()  # no half-written archive that looks like a backup
            if encrypting is not None and isinstance(exc, BrokenPipeError):
                raise BackupError(
                    f"cannot write {archive}: {encrypting}; no archive written"
                ) from None
            if isinstance(exc, FileNotFoundError) and exc.filename is not None:
                raise BackupError(
                    f"{exc.filename} vanished during the backup; no archive written"
                ) from None
            if isinstance(exc, OSError):
                if exc.filename is not None:
                    raise BackupError(
                        f"cannot read {exc.filename}: {exc.strerror or exc}; no archive written"
                    ) from None
                raise BackupError(f"cannot write {archive}: {exc}; no archive written") from None
            raise
    return BackupResult(archive, archive.stat().st_size, warnings + skipped.warnings())
