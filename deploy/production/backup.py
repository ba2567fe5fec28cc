"""Backups an operator can restore: the databases, the signing key, the bot's crypto store.

One archive (tar.gz, mode 0600: it holds every key of the deployment) per run, with
`pg_dump --format=custom` of each PostgreSQL database and the files and folders the manifest
(`deployment.yaml`, rendered next to the configuration) names: Synapse's signing key, the bot's
crypto store (Olm/Megolm sessions, cross-signing keys, pinned identities) and its pickle key.
Without the crypto store and its pickle key the restored bot would be a new device that cannot
read any earlier message; without the signing key other homeservers would see a new server.

Restore goes into *fresh* databases and empty folders only: it refuses to overwrite them, so a
mistyped command cannot destroy a running deployment. Single files (the signing key a fresh
install just generated) are replaced, the previous one kept as `<name>.before-restore`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
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
class Manifest:
    """What to save: database URLs and paths, by name (from `deployment.yaml`)."""

    databases: dict[str, str]
    paths: dict[str, Path]

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
        paths = data.get("paths") or {}
        if not isinstance(paths, dict):
            raise BackupError(f"{path}: 'paths' must be a mapping of names to paths")
        return cls(
            databases={str(k): str(v) for k, v in data["databases"].items()},
            paths={str(k): Path(str(v)) for k, v in paths.items()},
        )


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


def backup(manifest: Manifest, out_dir: Path, *, now: float | None = None) -> Path:
    """Write one archive into `out_dir` (created 0700) and return its path."""
    for name, path in manifest.paths.items():
        if not path.exists():
            raise BackupError(f"{name}: {path} does not exist (is this the right manifest?)")
    _private_dir(out_dir)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    archive = out_dir / f"caducee-backup-{stamp}.tar.gz"
    if archive.exists():
        raise BackupError(f"{archive} already exists")
    contents: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "created": stamp,
        "databases": sorted(manifest.databases),
        "paths": {},
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
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            for name in sorted(manifest.databases):
                tar.add(stage / f"{name}.dump", arcname=f"databases/{name}.dump")
            for name, path in sorted(manifest.paths.items()):
                contents["paths"][name] = "dir" if path.is_dir() else "file"
                tar.add(path, arcname=f"paths/{name}", recursive=True)
            data = json.dumps(contents, indent=2).encode()
            info = tarfile.TarInfo(MANIFEST_NAME)
            info.size = len(data)
            info.mode = 0o600
            info.mtime = int(time.time())
            tar.addfile(info, _bytes_io(data))
    return archive


def _bytes_io(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


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


def restore(archive: Path, manifest: Manifest) -> list[str]:
    """Restore `archive` into the (fresh) databases and paths of `manifest`; returns a summary.

    Every check runs before anything is written: unknown names, non-empty databases or
    folders stop the restore with nothing changed.
    """
    if not archive.is_file():
        raise BackupError(f"{archive}: no such archive")
    scratch_parent = manifest.paths and next(iter(manifest.paths.values())).parent
    with tempfile.TemporaryDirectory(
        dir=scratch_parent if scratch_parent and scratch_parent.exists() else None,
        prefix=".caducee-restore-",
    ) as scratch:
        root = Path(scratch)
        os.chmod(root, 0o700)
        try:
            with tarfile.open(archive, mode="r:gz") as tar:
                tar.extractall(root, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise BackupError(f"{archive}: not a readable Caducée backup ({exc})") from None
        try:
            contents = json.loads((root / MANIFEST_NAME).read_text())
        except (OSError, ValueError):
            raise BackupError(f"{archive}: no manifest; not a Caducée backup") from None
        if contents.get("format") != FORMAT_VERSION:
            raise BackupError(f"{archive}: backup format {contents.get('format')} not supported")
        missing_db = sorted(set(contents["databases"]) - set(manifest.databases))
        missing_paths = sorted(set(contents["paths"]) - set(manifest.paths))
        if missing_db or missing_paths:
            raise BackupError(
                "the manifest has no destination for: " + ", ".join(missing_db + missing_paths)
            )
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
            _check_empty_path(name, manifest.paths[name])

        summary = []
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
            summary.append(f"database {name} -> {target.dbname}")
        for name, kind in contents["paths"].items():
            _put_back(root / "paths" / name, manifest.paths[name], kind)
            summary.append(f"{kind} {name} -> {manifest.paths[name]}")
    return summary


def _put_back(source: Path, dest: Path, kind: str) -> None:
    """Move restored files into place, private (0700 folders, 0600 files)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
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
            os.replace(dest, dest.with_name(dest.name + ".before-restore"))
        shutil.move(str(source), dest)
        os.chmod(dest, 0o600)
