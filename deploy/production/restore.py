"""Restore an archive all or nothing, into fresh databases and empty folders.

1. The whole archive is decrypted into a private scratch folder and checked (every member
   against its checksum, regular files and folders only); nothing else is touched until then.
2. Every destination is checked: known names, empty databases, empty folders.
3. Each database is restored into a *new* database (same encoding, collation and owner), and
   every file and folder is written into a staging folder beside its destination, on the same
   file system, checked again against its checksum as it is written.
4. Only when every part succeeded does the switch run: renames only (database names, files,
   folder entries), each one recorded with its inverse. If one fails, the ones done are undone
   in reverse order and the staged copies are removed: the deployment is left as it was.

A file a fresh install already has (the signing key `render` or `init` generated, a federation
key a bridge started too early made) is set aside as `<name>.before-restore` (never
overwriting an earlier copy). The empty databases the new ones replace are dropped at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets as token_source
import shutil
import signal
import stat
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pyrage
from pyrage import x25519

from deploy.production import backup_pg
from deploy.production.backup_archive import (
    CHUNK,
    Verified,
    check_header,
    check_stream,
    decrypt_error,
)
from deploy.production.backup_model import BackupError, Manifest, PgTarget, RestoreResult

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _move(source: Path, dest: Path) -> None:
    """One step of the switch (a rename on one file system)."""
    os.rename(source, dest)


def set_aside_name(dest: Path) -> Path:
    """`<name>.before-restore`, or a name no earlier restore used: never overwrite a copy."""
    first = dest.with_name(dest.name + ".before-restore")
    if not os.path.lexists(first):
        return first
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    candidate = first.with_name(f"{first.name}-{stamp}")
    number = 1
    while os.path.lexists(candidate):
        number += 1
        candidate = first.with_name(f"{first.name}-{stamp}-{number}")
    return candidate


def _db_name(base: str, suffix: str) -> str:
    return base[: 63 - len(suffix)] + suffix  # PostgreSQL names: 63 bytes at most


class _Job:
    """One restore: what was staged, and how to undo each change made so far."""

    def __init__(self, tar: tarfile.TarFile, verified: Verified, archive: Path) -> None:
        self.tar, self.verified, self.archive = tar, verified, archive
        self.undo: list[tuple[str, Callable[[], None]]] = []
        self.switch: list[tuple[str, Callable[[], None], Callable[[], None]]] = []
        self.after: list[Callable[[], str | None]] = []  # once everything is in place
        self.token = token_source.token_hex(4)

    # -- databases -------------------------------------------------------------------------

    def stage_database(self, name: str, target: PgTarget, dump: Path) -> None:
        staged = backup_pg.Staged(
            name,
            target,
            _db_name(target.dbname, f"_restore_{self.token}"),
            _db_name(target.dbname, f"_before_restore_{self.token}"),
        )
        backup_pg.create_like(target, name, staged.temporary)
        self.undo.append(
            (
                f"drop the new database {staged.temporary}",
                lambda: backup_pg.drop(target, staged.temporary, name),
            )
        )
        backup_pg.restore_into(staged, dump)
        self.switch.append(
            (
                f"database {name}: {target.dbname} -> {staged.aside}",
                lambda: backup_pg.rename(target, target.dbname, staged.aside, name),
                lambda: backup_pg.rename(target, staged.aside, target.dbname, name),
            )
        )
        self.switch.append(
            (
                f"database {name}: {staged.temporary} -> {target.dbname}",
                lambda: backup_pg.rename(target, staged.temporary, target.dbname, name),
                lambda: backup_pg.rename(target, target.dbname, staged.temporary, name),
            )
        )
        self.after.append(lambda: self._drop_aside(staged))

    def _drop_aside(self, staged: backup_pg.Staged) -> str | None:
        aside = replace(staged.target, dbname=staged.aside)
        try:
            if backup_pg.is_empty(aside, staged.name):
                backup_pg.drop(staged.target, staged.aside, staged.name)
                return None
        except BackupError as exc:
            return f"{staged.name}: the empty database it replaced is kept as {staged.aside}: {exc}"
        return f"{staged.name}: the database it replaced is kept as {staged.aside}"

    # -- files -----------------------------------------------------------------------------

    def _staging(self, parent: Path) -> Path:
        created = []
        missing = parent
        while not missing.exists():
            created.append(missing)
            missing = missing.parent
        for folder in reversed(created):
            folder.mkdir(mode=0o700)
            self.undo.append((f"remove {folder}", partial(os.rmdir, folder)))
        staging = Path(tempfile.mkdtemp(dir=parent, prefix=".caducee-restore-"))
        self.undo.append((f"remove {staging}", lambda: shutil.rmtree(staging)))
        self.after.append(lambda: shutil.rmtree(staging, ignore_errors=True))
        return staging

    def _extract(self, prefix: str, into: Path, media: bool) -> None:
        """Write the members under `prefix` into `into` (which must not exist yet)."""
        folders: list[tuple[Path, int]] = []
        for member in self.tar.getmembers():
            if member.name != prefix and not member.name.startswith(prefix + "/"):
                continue
            path = into / member.name[len(prefix) + 1 :] if member.name != prefix else into
            if member.isdir():
                path.mkdir(mode=0o700)
                folders.append((path, (member.mode & 0o755) | 0o700 if media else 0o700))
                continue
            mode = (member.mode & 0o755) | 0o600 if media else 0o600
            source = self.tar.extractfile(member)
            assert source is not None  # verified: regular files and folders only
            digest = hashlib.sha256()
            with os.fdopen(os.open(path, _CREATE, 0o600), "wb") as out:
                while chunk := source.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != self.verified.members[member.name]["sha256"]:
                raise BackupError(f"{member.name}: changed on disk during the restore")
            os.chmod(path, mode)
        for folder, mode in reversed(folders):
            os.chmod(folder, mode)

    def stage_file(self, name: str, dest: Path) -> None:
        staged = self._staging(dest.parent) / name
        self._extract(f"paths/{name}", staged, media=False)
        if os.path.lexists(dest):
            aside = set_aside_name(dest)
            self.switch.append(
                (f"{dest} -> {aside}", lambda: _move(dest, aside), lambda: _move(aside, dest))
            )
        self.switch.append(
            (f"{name} -> {dest}", lambda: _move(staged, dest), lambda: _move(dest, staged))
        )

    def stage_folder(self, prefix: str, dest: Path, media: bool) -> None:
        """A folder tree: staged inside `dest` (same file system), then its entries moved."""
        if not dest.is_dir():
            staged = self._staging(dest.parent) / dest.name
            self._extract(prefix, staged, media)
            self.switch.append(
                (f"{prefix} -> {dest}", lambda: _move(staged, dest), lambda: _move(dest, staged))
            )
            return
        staged = self._staging(dest) / "tree"
        self._extract(prefix, staged, media)
        for entry in sorted(os.listdir(staged)):
            source, target = staged / entry, dest / entry
            self.switch.append(
                (
                    f"{prefix}/{entry} -> {target}",
                    partial(_move, source, target),
                    partial(_move, target, source),
                )
            )
        if not media:  # secrets: private; a media store keeps the mode the deployment gave it
            before = stat.S_IMODE(dest.stat().st_mode)
            self.switch.append(
                (
                    f"{dest} mode 0700",
                    lambda: os.chmod(dest, 0o700),
                    lambda: os.chmod(dest, before),
                )
            )

    # -- all or nothing --------------------------------------------------------------------

    def run_switch(self) -> None:
        for index, (what, do, undo) in enumerate(self.switch):
            try:
                do()
            except (OSError, BackupError) as exc:
                detail = exc if isinstance(exc, BackupError) else (exc.strerror or exc)
                raise BackupError(f"switching into place failed at {what}: {detail}") from None
            self.undo.append((f"reverse {what}", undo))
            del index

    def rollback(self, error: BackupError) -> BackupError:
        left: list[str] = []
        for what, undo in reversed(self.undo):
            try:
                undo()
            except (OSError, BackupError) as exc:
                left.append(f"{what} ({exc})")
        if not left:
            return BackupError(f"{error}. Nothing was changed: the deployment is as it was")
        return BackupError(
            f"{error}. Putting everything back failed for: {'; '.join(left)}. Do these steps "
            "by hand, in this order (deploy/README.md, 'When a restore fails')"
        )

    def finish(self) -> list[str]:
        notes = []
        for step in self.after:
            note = step()
            if note:
                notes.append(note)
        return notes


def _check_destinations(
    contents: dict[str, Any], manifest: Manifest, targets: dict[str, PgTarget]
) -> None:
    secrets = manifest.secrets()
    unknown = sorted(set(contents["databases"]) - set(manifest.databases))
    unknown += sorted(set(contents["paths"]) - set(secrets))
    unknown += sorted(set(contents["media"]) - set(manifest.media))
    if unknown:
        raise BackupError("the manifest has no destination for: " + ", ".join(unknown))
    for name in contents["databases"]:
        target = targets[name]
        if not backup_pg.is_empty(target, name):
            raise BackupError(
                f"the {name} database ({target.dbname}) is not empty: restore into a "
                "fresh database (see deploy/README.md)"
            )
    folders = [(name, secrets[name]) for name in contents["paths"]]
    folders += [(name, manifest.media[name]) for name in contents["media"]]
    for name, path in folders:
        if path.is_dir() and any(path.iterdir()):
            raise BackupError(f"{name}: {path} is not empty; restore goes into empty folders only")


def _notes(contents: dict[str, Any], manifest: Manifest) -> list[str]:
    """What the manifest names but the archive does not hold, and what that means."""
    notes = []
    absent = contents.get("absent", {})
    for name, item in manifest.optional.items():
        if name in contents["paths"]:
            continue
        why = absent.get(name) or item.absent
        notes.append(
            f"{name}: not in this archive (it did not exist when the backup was taken"
            + (f"; {why}" if why else "")
            + f"); {item.path} will be created anew"
        )
    left_out = set(contents.get("media_left_out", []))
    for name, path in manifest.media.items():
        if name in contents["media"]:
            continue
        how = "taken with --no-media" if name in left_out else "taken without media"
        notes.append(
            f"{name}: not in this archive ({how}): restore {path} from your separate copy "
            "before starting the services"
        )
    return notes


def _scratch_parent(manifest: Manifest) -> Path | None:
    """Beside the data, not in a small /tmp: the decrypted archive is as large as the backup."""
    for path in [*manifest.media.values(), *manifest.secrets().values()]:
        parent = path.resolve().parent
        if parent.is_dir():
            return parent
    return None


def restore(archive: Path, manifest: Manifest, identities: list[x25519.Identity]) -> RestoreResult:
    """Restore `archive` into the (fresh) databases and paths of `manifest`, all or nothing."""
    try:
        with _sigterm_interrupts():
            return _restore(archive, manifest, identities)
    except _Unchanged as exc:
        original: BackupError = exc.args[0]
        raise type(original)(f"{original}; nothing was changed") from None


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """A stop request (`docker stop`, systemd) interrupts like Ctrl-C, so the undo runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Unchanged(Exception):
    """Refused before anything was written: the deployment is as it was."""


def _restore(archive: Path, manifest: Manifest, identities: list[x25519.Identity]) -> RestoreResult:
    try:
        check_header(archive)
    except BackupError as exc:
        raise _Unchanged(exc) from None
    targets = {name: PgTarget.from_url(url) for name, url in manifest.databases.items()}
    with tempfile.TemporaryDirectory(
        dir=_scratch_parent(manifest), prefix=".caducee-restore-"
    ) as scratch:
        os.chmod(scratch, 0o700)
        plain = Path(scratch) / "archive.tar"
        try:
            verified = _decrypt_and_check(archive, identities, plain)
            _check_destinations(verified.contents, manifest, targets)
        except BackupError as exc:
            raise _Unchanged(exc) from None
        contents = verified.contents
        secrets = {name: path.resolve() for name, path in manifest.secrets().items()}
        media = {name: manifest.media[name].resolve() for name in contents["media"]}
        with tarfile.open(plain, mode="r:") as tar:
            job = _Job(tar, verified, archive)
            restored = []
            try:
                for name in contents["databases"]:
                    dump = Path(scratch) / f"{name}.dump"
                    job._extract(f"databases/{name}.dump", dump, media=False)
                    job.stage_database(name, targets[name], dump)
                    restored.append(f"database {name} -> {targets[name].dbname}")
                for name, kind in contents["paths"].items():
                    if kind == "dir":
                        job.stage_folder(f"paths/{name}", secrets[name], media=False)
                    else:
                        job.stage_file(name, secrets[name])
                    restored.append(f"{kind} {name} -> {manifest.secrets()[name]}")
                for name in contents["media"]:
                    job.stage_folder(f"media/{name}", media[name], media=True)
                    restored.append(f"media {name} -> {manifest.media[name]}")
                job.run_switch()
            except BackupError as exc:
                raise job.rollback(exc) from None
            except OSError as exc:
                raise job.rollback(BackupError(f"cannot write: {exc}")) from None
            except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (below): put everything back first
                raise job.rollback(BackupError("interrupted")) from None
            notes = job.finish()
    return RestoreResult(restored, _notes(contents, manifest) + notes)


def _decrypt_and_check(archive: Path, identities: list[x25519.Identity], plain: Path) -> Verified:
    """Decrypt the whole archive into `plain` (0600), then check every member of it."""
    try:
        with (
            archive.open("rb") as source,
            os.fdopen(os.open(plain, _CREATE, 0o600), "wb") as out,
        ):
            pyrage.decrypt_io(source, out, identities)
    except pyrage.DecryptError as exc:
        raise decrypt_error(archive, exc) from None
    except OSError as exc:
        if exc.errno is None:  # age's authentication failure, raised as a read error
            raise decrypt_error(archive, exc) from None
        raise BackupError(f"cannot decrypt {archive}: {exc.strerror or exc}") from None
    with plain.open("rb") as handle:
        return check_stream(handle, archive)
