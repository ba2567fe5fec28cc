"""Shared by the backup tests: a test deployment's data folders and the operator's age key."""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyrage
import yaml
from pyrage import x25519

from bridge.registry.keys import load_or_create
from deploy.production.backup import Manifest
from deploy.production.backup import backup as backup_to
from deploy.production.backup_archive import CHECKSUMS_NAME
from deploy.production.restore import restore as restore_with

IDENTITY = x25519.Identity.generate()
RECIPIENT = str(IDENTITY.to_public())


def backup(manifest: Manifest, out: Path, **options: Any) -> Any:
    return backup_to(manifest, out, [IDENTITY.to_public()], **options)


def restore(archive: Path, manifest: Manifest) -> Any:
    return restore_with(archive, manifest, [IDENTITY])


def open_archive(archive: Path) -> tarfile.TarFile:
    """The decrypted archive, for looking inside."""
    plain = pyrage.decrypt(archive.read_bytes(), [IDENTITY])
    return tarfile.open(fileobj=io.BytesIO(plain), mode="r:")


MEDIA_FILE = "local_content/ab/cd/efghijklmnop"


@dataclass
class Install:
    """The data folders of one installation and its `deployment.yaml`."""

    root: Path
    manifest_path: Path

    @property
    def synapse_key(self) -> Path:
        return self.root / "synapse" / "signing.key"

    @property
    def federation_key(self) -> Path:
        return self.root / "bridge" / "federation.signing.key"

    @property
    def media(self) -> Path:
        return self.root / "synapse" / "media_store"

    @property
    def bot_store(self) -> Path:
        return self.root / "bot" / "store"

    def manifest(self) -> Manifest:
        return Manifest.load(self.manifest_path)


def make_install(root: Path) -> Install:
    """Empty folders as `prepare_data_dirs` makes them, and a manifest shaped like render's."""
    for folder in ("synapse", "synapse/media_store", "bridge", "bot", "bot/store", "bot/secrets"):
        (root / folder).mkdir(parents=True, mode=0o700)
    install = Install(root, root / "deployment.yaml")
    data = {
        "databases": {},
        "paths": {
            "synapse_signing_key": str(install.synapse_key),
            "bot_store": str(install.bot_store),
            "bot_secrets": str(root / "bot" / "secrets"),
        },
        "optional_paths": {
            "bridge_federation_key": {
                "path": str(install.federation_key),
                "absent": "the bridge creates it at its first start",
            }
        },
        "media": {"synapse_media_store": str(install.media)},
    }
    install.manifest_path.write_text(yaml.safe_dump(data))
    return install


def populate(install: Install, *, bridge_ran: bool = True) -> None:
    install.synapse_key.write_text("ed25519 a_xyz c2VjcmV0\n")
    os.chmod(install.synapse_key, 0o600)
    (install.bot_store / "crypto.db").write_bytes(b"olm sessions")
    (install.root / "bot" / "secrets" / "pickle-key").write_text("pickle")
    if bridge_ran:
        load_or_create(install.federation_key)
    media = install.media / MEDIA_FILE
    media.parent.mkdir(parents=True)
    media.write_bytes(os.urandom(4096))
    os.chmod(media, 0o644)  # Synapse in its container writes with umask 022
    thumbnail = install.media / "local_thumbnails" / "ab" / "t.png"
    thumbnail.parent.mkdir(parents=True)
    thumbnail.write_bytes(b"png")
    os.chmod(thumbnail, 0o600)  # with systemd's UMask=0077


def rewrite(
    archive: Path,
    out: Path,
    *,
    drop: str | None = None,
    add: list[tuple[tarfile.TarInfo, bytes | None]] | None = None,
    change: str | None = None,
) -> Path:
    """The same archive, re-encrypted to the same recipient, with one thing changed."""
    plain = io.BytesIO()
    with open_archive(archive) as source, tarfile.open(fileobj=plain, mode="w") as tar:
        for member in source.getmembers():
            if member.name == drop:
                continue
            if member.name == CHECKSUMS_NAME:
                for info, data in add or []:
                    tar.addfile(info, io.BytesIO(data) if data is not None else None)
            handle = source.extractfile(member) if member.isreg() else None
            data = handle.read() if handle else None
            if member.name == change and data is not None:
                data = bytes([data[0] ^ 1]) + data[1:]
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    out.write_bytes(pyrage.encrypt(plain.getvalue(), [IDENTITY.to_public()]))
    return out
