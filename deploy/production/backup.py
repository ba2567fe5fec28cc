"""Backups an operator can restore: the databases, the keys, the bot's crypto store, the media.

One archive (tar.gz, mode 0600: it holds every key of the deployment) per run, with
`pg_dump --format=custom` of each PostgreSQL database and the files and folders the manifest
(`deployment.yaml`, rendered next to the configuration) names: Synapse's signing key, the bot's
crypto store (Olm/Megolm sessions, cross-signing keys, pinned identities) and its pickle key,
the bridge's federation signing key, and Synapse's media store (attachments, encrypted by the
clients). Without the crypto store and its pickle key the restored bot would be a new device
that cannot read any earlier message; without Synapse's signing key other homeservers would
see a new server; without the federation key every peer federation would refuse the
federation's manifest until its admins pin a new fingerprint.

The federation key is created by the bridge at its first start: a backup taken before then
says so and goes on (nothing to lose yet). The media store can be large: it is streamed into
the archive file by file, never held in memory, and `include_media=False` (`--no-media`) leaves
it out for operators who back it up separately. Synapse keeps running meanwhile and deletes
media on its own schedule (media retention): a media file or folder gone between listing its
folder and reading it is counted and left out, with one warning. Symlinks and special files
inside the media store are not followed out of it: counted and left out too. A path the
manifest names is resolved first, so a media store or secret that is a symlink (`media_store ->
/srv/media`) is archived with its contents, under its usual name.

Archive members keep their modes. Restore goes into *fresh* databases and empty folders only:
it refuses to overwrite them, so a mistyped command cannot destroy a running deployment. It
reads the archive's own manifest (its first member) and checks everything before extracting
anything. Single files (the signing key a fresh install just generated, a federation key a
bridge started too early made) are replaced, the previous one kept as `<name>.before-restore`
(`<name>.before-restore-<UTC time>` when that exists already: an earlier copy is never
overwritten). Secrets come back 0600 (folders 0700). Media files and folders keep their
archived read and execute bits; write permission stays the owner's alone (files are always
owner-readable and writable, folders owner-accessible).
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


class BackupError(Exception):
    """The backup or restore cannot proceed; the message is meant for the operator."""


@dataclass(frozen=True)
class PgTarget:
    """libpq connection parameters; the password travels in the environment, never in argv."""

    host: str
    port: int
    user: str
    password: str
    dbname: str

    @classmethod
    def from_url(cls, url: str) -> PgTarget:
        parts = urlsplit(url)
        if not parts.scheme.startswith("postgres") or not parts.path.strip("/"):
            raise BackupError(f"not a PostgreSQL database URL: {_safe(url)}")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password or ""),
            dbname=unquote(parts.path.strip("/")),
        )

    def args(self, dbname: str | None = None) -> list[str]:
        return [
            f"--host={self.host}",
            f"--port={self.port}",
            f"--username={self.user}",
            f"--dbname={dbname or self.dbname}",
        ]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.password:
            env["PGPASSWORD"] = self.password
        return env


@dataclass(frozen=True)
class OptionalPath:
    """A secret a service creates at its first start: saved once it exists."""

    path: Path
    absent: str  # why it may not exist yet, for the operator


@dataclass(frozen=True)
class Manifest:
    """What to save, by name (from `deployment.yaml`).

    `paths`: secrets that must exist; `optional`: secrets saved once they exist; `media`:
    folders of (large, client-encrypted) media, left out on request.
    """

    databases: dict[str, str]
    paths: dict[str, Path]
    optional: dict[str, OptionalPath] = field(default_factory=dict)
    media: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BackupError(
                f"{path}: no such file (it is rendered by `caducee deploy render`)"
            ) from None
        except (OSError, yaml.YAMLError) as exc:
            raise BackupError(f"{path}: cannot read: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("databases"), dict):
            raise BackupError(f"{path}: expected 'databases' and 'paths' mappings")
        sections = {key: data.get(key) or {} for key in ("paths", "optional_paths", "media")}
        for key, value in sections.items():
            if not isinstance(value, dict):
                raise BackupError(f"{path}: '{key}' must be a mapping of names")
        optional = {}
        for name, entry in sections["optional_paths"].items():
            if not isinstance(entry, dict) or not entry.get("path"):
                raise BackupError(f"{path}: optional path {name!r} needs a 'path'")
            optional[str(name)] = OptionalPath(
                Path(str(entry["path"])), str(entry.get("absent", ""))
            )
        manifest = cls(
            databases={str(k): str(v) for k, v in data["databases"].items()},
            paths={str(k): Path(str(v)) for k, v in sections["paths"].items()},
            optional=optional,
            media={str(k): Path(str(v)) for k, v in sections["media"].items()},
        )
        names = [*manifest.paths, *manifest.optional, *manifest.media]
        if len(set(names)) != len(names):
            raise BackupError(f"{path}: a name appears in more than one section")
        return manifest

    def secrets(self) -> dict[str, Path]:
        """Where each secret (required or optional) lives."""
        return {**self.paths, **{name: item.path for name, item in self.optional.items()}}


@dataclass(frozen=True)
class BackupResult:
    archive: Path
    size: int  # bytes
    warnings: list[str]  # for the operator: what is not in the archive, and why


@dataclass(frozen=True)
class RestoreResult:
    restored: list[str]  # "<kind> <name> -> <destination>"
    notes: list[str]  # for the operator: what the archive did not hold, and what follows


def _safe(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def _run(args: list[str], target: PgTarget, what: str) -> str:
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


_OPEN_MEDIA = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _add_media(tar: tarfile.TarFile, name: str, top: Path, skipped: _Skipped) -> None:
    """Add the folder `top` as `media/<name>`, file by file (each copied in chunks).

    A file or folder gone between listing its folder and opening it is counted, not an error:
    Synapse deletes media while the backup runs. Nothing is followed out of `top`.
    """
    root = f"media/{name}"
    try:
        tar.addfile(tar.gettarinfo(str(top), root))
    except FileNotFoundError:
        raise BackupError(f"{name}: {top} vanished during the backup; no archive written") from None
    pending = [(str(top), root)]
    while pending:
        folder, arcfolder = pending.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except FileNotFoundError:  # its header is in the archive: it comes back empty
            skipped.vanished += 1
            continue
        subfolders = []
        for entry in entries:
            arcname = f"{arcfolder}/{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                try:
                    info = tar.gettarinfo(entry.path, arcname)
                except FileNotFoundError:
                    skipped.vanished += 1
                    continue
                if not info.isdir():  # replaced meanwhile (by a symlink?)
                    skipped.not_followed += 1
                    continue
                tar.addfile(info)
                subfolders.append((entry.path, arcname))
            elif entry.is_file(follow_symlinks=False):
                try:
                    fd = os.open(entry.path, _OPEN_MEDIA)
                except FileNotFoundError:
                    skipped.vanished += 1
                    continue
                except OSError as exc:
                    if exc.errno != errno.ELOOP:  # ELOOP: replaced by a symlink meanwhile
                        raise
                    skipped.not_followed += 1
                    continue
                # Open, the file stays readable even if Synapse deletes it now.
                with os.fdopen(fd, "rb") as handle:
                    info = tar.gettarinfo(arcname=arcname, fileobj=handle)
                    if info.isreg() or info.islnk():
                        tar.addfile(info, handle)
                    else:
                        skipped.not_followed += 1
            elif os.path.lexists(entry.path):
                skipped.not_followed += 1
            else:  # is_dir/is_file say False for a name that is gone
                skipped.vanished += 1
        pending.extend(reversed(subfolders))


def backup(
    manifest: Manifest, out_dir: Path, *, include_media: bool = True, now: float | None = None
) -> BackupResult:
    """Write one archive into `out_dir` (created 0700)."""
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
    # A symlinked store (`media_store -> /srv/media`) is archived as its contents.
    secrets = {name: _resolve(name, path) for name, path in secrets.items()}
    media = {name: _resolve(name, path) for name, path in media.items()}
    skipped = _Skipped()
    _private_dir(out_dir)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    archive = out_dir / f"caducee-backup-{stamp}.tar.gz"
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
            target = PgTarget.from_url(url)
            dump = stage / f"{name}.dump"
            _run(
                [
                    "pg_dump",
                    *target.args(),
                    "--format=custom",
                    "--no-owner",
                    "--no-privileges",
                    f"--file={dump}",
                ],
                target,
                f"pg_dump of the {name} database",
            )
        fd = os.open(archive, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            # Dumps are already compressed and media is encrypted: a light gzip level.
            with (
                os.fdopen(fd, "wb") as raw,
                tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar,
            ):
                # First, so that restore checks its destinations before reading the rest.
                data = json.dumps(contents, indent=2).encode()
                info = tarfile.TarInfo(MANIFEST_NAME)
                info.size = len(data)
                info.mode = 0o600
                info.mtime = int(time.time())
                tar.addfile(info, io.BytesIO(data))
                for name in sorted(manifest.databases):
                    tar.add(stage / f"{name}.dump", arcname=f"databases/{name}.dump")
                for name, path in sorted(secrets.items()):
                    try:
                        tar.add(path, arcname=f"paths/{name}", recursive=True)
                    except FileNotFoundError as exc:  # secrets must all be there
                        raise BackupError(
                            f"{name}: {exc.filename or path} vanished during the backup; "
                            "no archive written"
                        ) from None
                for name, path in sorted(media.items()):
                    _add_media(tar, name, path, skipped)
        except BaseException as exc:
            archive.unlink(missing_ok=True)  # no half-written archive that looks like a backup
            if isinstance(exc, OSError):
                if exc.filename is not None:
                    raise BackupError(
                        f"cannot read {exc.filename}: {exc.strerror or exc}; no archive written"
                    ) from None
                raise BackupError(f"cannot write {archive}: {exc}") from None
            raise
    return BackupResult(archive, archive.stat().st_size, warnings + skipped.warnings())


def _database_is_empty(target: PgTarget) -> bool:
    out = _run(
        [
            "psql",
            *target.args(),
            "--no-psqlrc",
            "--tuples-only",
            "--no-align",
            "--command=SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
        ],
        target,
        f"checking the database {target.dbname}",
    )
    return out.strip() == "0"


def _check_empty_path(name: str, path: Path) -> None:
    if path.is_dir() and any(path.iterdir()):
        raise BackupError(f"{name}: {path} is not empty; restore goes into empty folders only")


def _open_archive(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, mode="r:gz")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BackupError(f"{archive}: not a readable Caducée backup ({exc})") from None


def _read_contents(tar: tarfile.TarFile, archive: Path) -> dict[str, Any]:
    """The archive's own manifest: its first member (the last one in earlier archives)."""
    try:
        member = tar.next()
        if member is None or member.name != MANIFEST_NAME:
            member = tar.getmember(MANIFEST_NAME)
        handle = tar.extractfile(member)
        contents = json.loads(handle.read()) if handle is not None else None
    except KeyError:
        raise BackupError(f"{archive}: no manifest; not a Caducée backup") from None
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise BackupError(f"{archive}: not a readable Caducée backup ({exc})") from None
    if not isinstance(contents, dict) or contents.get("format") != FORMAT_VERSION:
        found = contents.get("format") if isinstance(contents, dict) else None
        raise BackupError(f"{archive}: backup format {found} not supported")
    return contents


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
        if name in contents.get("media", {}):
            continue
        how = "taken with --no-media" if name in left_out else "taken without media"
        notes.append(
            f"{name}: not in this archive ({how}): restore {path} from your separate copy "
            "before starting the services"
        )
    return notes


def restore(archive: Path, manifest: Manifest) -> RestoreResult:
    """Restore `archive` into the (fresh) databases and paths of `manifest`.

    Every check runs before anything is written or extracted: unknown names, non-empty
    databases or folders stop the restore with nothing changed.
    """
    if not archive.is_file():
        raise BackupError(f"{archive}: no such archive")
    with _open_archive(archive) as tar:
        contents = _read_contents(tar, archive)
        secrets = manifest.secrets()
        media = contents.get("media", {})
        unknown = sorted(set(contents["databases"]) - set(manifest.databases))
        unknown += sorted(set(contents["paths"]) - set(secrets))
        unknown += sorted(set(media) - set(manifest.media))
        if unknown:
            raise BackupError("the manifest has no destination for: " + ", ".join(unknown))
        targets = {
            name: PgTarget.from_url(manifest.databases[name]) for name in contents["databases"]
        }
        for name, target in targets.items():
            if not _database_is_empty(target):
                raise BackupError(
                    f"the {name} database ({target.dbname}) is not empty: restore into a "
                    "fresh database (see deploy/README.md)"
                )
        for name in contents["paths"]:
            _check_empty_path(name, secrets[name])
        media_dest = {name: manifest.media[name].resolve() for name in media}
        for name in media:
            _check_empty_path(name, media_dest[name])

        # Next to the media store when there is one, so that moving it into place is a rename.
        near = [media_dest[name] for name in media] or list(secrets.values())
        scratch_parent = near[0].parent if near and near[0].parent.exists() else None
        with tempfile.TemporaryDirectory(dir=scratch_parent, prefix=".caducee-restore-") as scratch:
            root = Path(scratch)
            os.chmod(root, 0o700)
            try:
                tar.extractall(root, filter="data")
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise BackupError(f"{archive}: cannot extract ({exc})") from None

            restored = []
            for name, target in targets.items():
                _run(
                    [
                        "pg_restore",
                        *target.args(),
                        "--no-owner",
                        "--no-privileges",
                        "--exit-on-error",
                        "--single-transaction",
                        str(root / "databases" / f"{name}.dump"),
                    ],
                    target,
                    f"pg_restore of the {name} database",
                )
                restored.append(f"database {name} -> {target.dbname}")
            for name, kind in contents["paths"].items():
                _put_back(root / "paths" / name, secrets[name], kind)
                restored.append(f"{kind} {name} -> {secrets[name]}")
            for name in media:
                modes = _folder_modes(tar, f"media/{name}")
                _put_back_media(root / "media" / name, media_dest[name], modes)
                restored.append(f"media {name} -> {manifest.media[name]}")
    return RestoreResult(restored, _notes(contents, manifest))


def _put_back(source: Path, dest: Path, kind: str) -> None:
    """Move restored secrets into place, private (0700 folders, 0600 files)."""
    dest = dest.resolve()  # a symlinked secret stays a symlink to the restored one
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if kind == "dir":
        _private_dir(dest)
        for item in source.iterdir():
            shutil.move(str(item), dest / item.name)
        for folder, _dirs, files in os.walk(dest):
            os.chmod(folder, 0o700)
            for file in files:
                os.chmod(Path(folder) / file, 0o600)
    else:
        if dest.exists():
            os.replace(dest, _set_aside_name(dest))
        shutil.move(str(source), dest)
        os.chmod(dest, 0o600)


def _set_aside_name(dest: Path) -> Path:
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


def _folder_modes(tar: tarfile.TarFile, prefix: str) -> dict[str, int]:
    """Archived modes of the folders under `prefix`, by relative path ("" for `prefix`).

    The `data` extraction filter leaves folders at the umask; restore puts the modes back.
    """
    modes = {}
    for member in tar.getmembers():
        if not member.isdir():
            continue
        if member.name == prefix:
            modes[""] = member.mode
        elif member.name.startswith(prefix + "/"):
            modes[member.name[len(prefix) + 1 :]] = member.mode
    return modes


def _put_back_media(source: Path, dest: Path, modes: dict[str, int]) -> None:
    """Move the media store into its (empty) folder, with the archived folder modes.

    As for files (`data` filter), write permission stays the owner's alone and the owner keeps
    access. The folder the deployment prepared keeps its own mode.
    """
    if not dest.exists():
        dest.mkdir(mode=0o700, parents=True)
        os.chmod(dest, (modes.get("", 0o700) & 0o755) | 0o700)
    for item in source.iterdir():
        shutil.move(str(item), dest / item.name)
    for relative, mode in modes.items():
        folder = dest / relative
        # only real folders of the restored store: never a symlink, never a path out of it
        inside = (
            bool(relative) and not folder.is_symlink() and folder.resolve().is_relative_to(dest)
        )
        if inside and folder.is_dir():
            os.chmod(folder, (mode & 0o755) | 0o700)
