"""What a backup saves, by name: the deployment's manifest (`deployment.yaml`) and its errors.

`Manifest` is read from the `deployment.yaml` that `caducee deploy render` writes next to the
configuration; `PgTarget` is one PostgreSQL database of it. Errors are `BackupError` (the
operation failed: exit status 1) or `BackupUsageError` (a setting or argument is wrong: exit
status 2), with a message meant for the operator.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml


class BackupError(Exception):
    """The backup, verification or restore failed; the message is meant for the operator."""


class BackupUsageError(BackupError):
    """A setting, a key or an argument is unusable: nothing was attempted."""


def safe_url(url: str) -> str:
    """`url` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


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
            raise BackupUsageError(f"not a PostgreSQL database URL: {safe_url(url)}")
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
            raise BackupUsageError(
                f"{path}: no such file (it is rendered by `caducee deploy render`)"
            ) from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise BackupUsageError(f"{path}: cannot read: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("databases"), dict):
            raise BackupUsageError(f"{path}: expected 'databases' and 'paths' mappings")
        sections = {key: data.get(key) or {} for key in ("paths", "optional_paths", "media")}
        for key, value in sections.items():
            if not isinstance(value, dict):
                raise BackupUsageError(f"{path}: '{key}' must be a mapping of names")
        optional = {}
        for name, entry in sections["optional_paths"].items():
            if not isinstance(entry, dict) or not entry.get("path"):
                raise BackupUsageError(f"{path}: optional path {name!r} needs a 'path'")
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
            raise BackupUsageError(f"{path}: a name appears in more than one section")
        for name in [*names, *manifest.databases]:
            if not name or "/" in name or name in (".", "..") or "\0" in name:
                raise BackupUsageError(f"{path}: {name!r} is not a usable name")
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
