"""The archive format: a tar stream, every member checksummed, encrypted with age.

An archive is the age encryption (X25519 recipients, through `pyrage`) of an uncompressed tar
stream: `manifest.json` first (what the archive holds), then the database dumps, the secrets
and the media, then `checksums.json` last (the type, size and SHA-256 of every other member).
age authenticates every 64 KiB chunk and the end of the stream, so a changed byte anywhere,
or a missing tail, makes decryption fail; the checksum list catches a member missing or added
by whoever re-encrypts an archive. Only regular files and folders are ever written: a link
or special member is refused on reading, as is any name outside the layout above.

The server holds only the recipients (public keys); the identities that decrypt are kept by
the operator apart from it and given to `verify` and `restore`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

import pyrage
from pyrage import x25519

from deploy.production.backup_model import BackupError, BackupUsageError

FORMAT_VERSION = 2
MANIFEST_NAME = "manifest.json"
CHECKSUMS_NAME = "checksums.json"
AGE_MAGIC = b"age-encryption.org/v1\n"
CHUNK = 1024 * 1024
_MAX_JSON = 64 * 1024 * 1024
_MEMBER = re.compile(r"^(databases/[^/]+\.dump|(paths|media)/[^/]+(/.+)?)$")


def load_recipients(values: list[str]) -> list[x25519.Recipient]:
    """age recipients (`age1...`), given as such or as files of one recipient per line."""
    found: list[str] = []
    for value in values:
        for item in re.split(r"[\s,]+", value.strip()):
            if not item:
                continue
            if item.startswith("age1"):
                found.append(item)
                continue
            path = Path(item)
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise BackupUsageError(
                    f"backup recipient {item!r}: neither an age recipient (age1...) nor a "
                    f"readable file ({exc.__class__.__name__})"
                ) from None
            keys = [line.strip() for line in lines if line.strip().startswith("age1")]
            if not keys:
                raise BackupUsageError(f"{path}: no age recipient (age1...) in this file")
            found += keys
    if not found:
        raise BackupUsageError(
            "no backup recipient: give --recipient age1... (or set CADUCEE_BACKUP_RECIPIENT); "
            "see deploy/README.md, Backup key"
        )
    recipients = []
    for key in found:
        try:
            recipients.append(x25519.Recipient.from_str(key))
        except pyrage.RecipientError as exc:
            raise BackupUsageError(f"{key[:12]}...: not an age recipient ({exc})") from None
    return recipients


def load_identities(path: Path) -> list[x25519.Identity]:
    """The operator's age identities (`AGE-SECRET-KEY-1...` lines) from `path`."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BackupUsageError(f"{path}: cannot read the identity file ({exc})") from None
    identities = []
    for line in lines:
        if line.strip().startswith("AGE-SECRET-KEY-"):
            try:
                identities.append(x25519.Identity.from_str(line.strip()))
            except pyrage.IdentityError:
                raise BackupUsageError(f"{path}: a line is not a valid age identity") from None
    if not identities:
        raise BackupUsageError(f"{path}: no age identity (AGE-SECRET-KEY-1...) in this file")
    return identities


class _Hashing:
    """A reader that hashes what it hands out."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        return data


class _Pump:
    """One pyrage call on its own thread, fed or drained through a pipe."""

    def __init__(self, work: Callable[[], None]) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(work,), daemon=True)
        self.thread.start()

    def _run(self, work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as exc:  # reported by the caller's thread
            self.error = exc

    def join(self) -> None:
        self.thread.join()


class ArchiveWriter:
    """Write an archive to `path` (created 0600, never overwritten), member by member."""

    def __init__(self, path: Path, recipients: list[x25519.Recipient]) -> None:
        self.path = path
        self.checksums: dict[str, dict[str, Any]] = {}
        out_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        read_fd, write_fd = os.pipe()
        self._out = os.fdopen(out_fd, "wb")
        self._plain_in = os.fdopen(read_fd, "rb")

        def encrypt() -> None:
            with self._plain_in:
                pyrage.encrypt_io(self._plain_in, self._out, recipients)

        self._pump = _Pump(encrypt)
        self._plain_out = os.fdopen(write_fd, "wb")
        self.tar = tarfile.open(  # noqa: SIM115 - closed by finish() or abort()
            fileobj=self._plain_out, mode="w|", format=tarfile.PAX_FORMAT
        )

    def add_bytes(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
        self.tar.addfile(info, io.BytesIO(data))
        self.checksums[name] = _file_entry(len(data), hashlib.sha256(data).hexdigest())

    def add_dir(self, name: str, st: os.stat_result) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, st.st_mode & 0o7777, int(st.st_mtime)
        self.tar.addfile(info)
        self.checksums[name] = {"type": "dir"}

    def add_file(self, name: str, handle: IO[bytes], st: os.stat_result) -> None:
        """A regular file, always as itself: never a hard link to an earlier member."""
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = st.st_size, st.st_mode & 0o7777, int(st.st_mtime)
        hashing = _Hashing(handle)
        self.tar.addfile(info, hashing)
        self.checksums[name] = _file_entry(st.st_size, hashing.digest.hexdigest())

    def finish(self) -> None:
        data = json.dumps({"format": FORMAT_VERSION, "members": self.checksums}, indent=1)
        self.add_bytes(CHECKSUMS_NAME, data.encode())
        self.checksums.pop(CHECKSUMS_NAME)
        self._close()
        if self._pump.error is not None:
            self.path.unlink(missing_ok=True)
            raise BackupError(f"cannot write {self.path}: {self._pump.error}; no archive written")

    def abort(self) -> BaseException | None:
        """Close and delete the archive; the encrypting side's own error, if it failed first."""
        self._close()
        self.path.unlink(missing_ok=True)
        return self._pump.error

    def _close(self) -> None:
        # OSError: the encrypting side stopped first; its error is the one to report.
        for close in (self.tar.close, self._plain_out.close):
            with contextlib.suppress(OSError):
                close()
        self._pump.join()
        self._out.close()


def _file_entry(size: int, sha256: str) -> dict[str, Any]:
    return {"type": "file", "size": size, "sha256": sha256}


@dataclass(frozen=True)
class Verified:
    """An archive whose every member matched its checksum."""

    contents: dict[str, Any]  # manifest.json
    members: dict[str, dict[str, Any]]  # name -> {"type", "size", "sha256"}


def check_header(archive: Path) -> None:
    try:
        with archive.open("rb") as handle:
            head = handle.read(len(AGE_MAGIC))
    except IsADirectoryError:
        raise BackupUsageError(f"{archive}: a folder, not an archive") from None
    except FileNotFoundError:
        raise BackupUsageError(f"{archive}: no such archive") from None
    except OSError as exc:
        raise BackupError(f"{archive}: cannot read ({exc.strerror or exc})") from None
    if head.startswith(b"\x1f\x8b"):
        raise BackupError(
            f"{archive}: an unencrypted archive from an earlier version, without checksums: "
            "it cannot be verified. Restore it with the release that wrote it"
        )
    if head != AGE_MAGIC:
        raise BackupError(f"{archive}: not a Caducée backup (not an age-encrypted file)")


def decrypt_error(archive: Path, exc: BaseException) -> BackupError:
    if "No matching keys" in str(exc):
        return BackupError(
            f"{archive}: none of the given identities opens this archive (wrong key, or a "
            "damaged header)"
        )
    return BackupError(f"{archive}: damaged or truncated (authentication failed: {exc})")


def verify(archive: Path, identities: list[x25519.Identity]) -> Verified:
    """Decrypt and check the whole archive without writing anything anywhere."""
    check_header(archive)
    read_fd, write_fd = os.pipe()
    source = archive.open("rb")
    sink = os.fdopen(write_fd, "wb")

    def decrypt() -> None:
        with source, sink:
            pyrage.decrypt_io(source, sink, identities)

    pump = _Pump(decrypt)
    failure: BackupError | None = None
    with os.fdopen(read_fd, "rb") as plain:
        try:
            verified = check_stream(plain, archive)
            while plain.read(CHUNK):  # the rest (tar padding): the end must authenticate too
                pass
        except BackupError as exc:
            failure = exc
    pump.join()
    if pump.error is not None:
        raise decrypt_error(archive, pump.error)
    if failure is not None:
        raise failure
    return verified


def check_stream(plain: BinaryIO, archive: Path) -> Verified:
    """Read a decrypted tar stream once: layout, member types, checksums."""
    seen: dict[str, dict[str, Any]] = {}
    documents: dict[str, Any] = {}
    try:
        with tarfile.open(fileobj=plain, mode="r|") as tar:
            for member in tar:
                if CHECKSUMS_NAME in documents:
                    raise BackupError(f"{archive}: {member.name!r} after the checksum list")
                _check_member(member, archive, first=not seen)
                if member.name in seen:
                    raise BackupError(f"{archive}: {member.name!r} appears twice")
                if member.isdir():
                    seen[member.name] = {"type": "dir"}
                    continue
                handle = tar.extractfile(member)
                assert handle is not None  # a regular file
                digest = hashlib.sha256()
                keep = member.name in (MANIFEST_NAME, CHECKSUMS_NAME)
                if keep and member.size > _MAX_JSON:
                    raise BackupError(f"{archive}: {member.name} is too large")
                kept = bytearray()
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
                    if keep:
                        kept += chunk
                if keep:
                    documents[member.name] = _json(bytes(kept), member.name, archive)
                seen[member.name] = _file_entry(member.size, digest.hexdigest())
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BackupError(f"{archive}: not a readable Caducée backup ({exc})") from None
    if CHECKSUMS_NAME not in documents:
        raise BackupError(f"{archive}: the checksum list is missing (truncated archive?)")
    return _compare(seen, documents, archive)


def _check_member(member: tarfile.TarInfo, archive: Path, *, first: bool) -> None:
    name = member.name
    if member.issym() or member.islnk():
        raise BackupError(
            f"{archive}: {name!r} is a link; Caducée backups never hold links: refused"
        )
    if not (member.isreg() or member.isdir()):
        raise BackupError(f"{archive}: {name!r} is a special file: refused")
    if first and name != MANIFEST_NAME:
        raise BackupError(f"{archive}: its first member is not {MANIFEST_NAME}")
    if name in (MANIFEST_NAME, CHECKSUMS_NAME):
        if not member.isreg():
            raise BackupError(f"{archive}: {name} is not a file")
        return
    parts = name.split("/")
    if not _MEMBER.match(name) or any(part in ("", ".", "..") for part in parts) or "\0" in name:
        raise BackupError(f"{archive}: unexpected member name {name!r}: refused")


def _json(data: bytes, name: str, archive: Path) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise BackupError(f"{archive}: {name} is not valid JSON") from None


def _compare(seen: dict[str, dict[str, Any]], documents: dict[str, Any], archive: Path) -> Verified:
    listed = documents[CHECKSUMS_NAME]
    contents = documents.get(MANIFEST_NAME)
    if not isinstance(listed, dict) or not isinstance(listed.get("members"), dict):
        raise BackupError(f"{archive}: the checksum list is malformed")
    expected: dict[str, dict[str, Any]] = listed["members"]
    seen = {name: entry for name, entry in seen.items() if name != CHECKSUMS_NAME}
    missing = sorted(set(expected) - set(seen))
    if missing:
        raise BackupError(f"{archive}: member(s) missing: {', '.join(missing[:5])}")
    extra = sorted(set(seen) - set(expected))
    if extra:
        raise BackupError(f"{archive}: member(s) not in its checksum list: {', '.join(extra[:5])}")
    damaged = sorted(name for name in seen if seen[name] != expected[name])
    if damaged:
        raise BackupError(
            f"{archive}: member(s) do not match their checksum: {', '.join(damaged[:5])}"
        )
    if not isinstance(contents, dict) or contents.get("format") != FORMAT_VERSION:
        found = contents.get("format") if isinstance(contents, dict) else None
        raise BackupError(f"{archive}: backup format {found} not supported")
    for key, kind in (("databases", list), ("paths", dict), ("media", dict)):
        if not isinstance(contents.get(key), kind):
            raise BackupError(f"{archive}: {MANIFEST_NAME} has no valid {key!r}")
    wanted = [f"databases/{name}.dump" for name in contents["databases"]]
    wanted += [f"paths/{name}" for name in contents["paths"]]
    wanted += [f"media/{name}" for name in contents["media"]]
    absent = [name for name in wanted if name not in seen]
    if absent:
        raise BackupError(f"{archive}: member(s) missing: {', '.join(absent[:5])}")
    for name, kind in contents["paths"].items():
        if seen[f"paths/{name}"]["type"] != kind:
            raise BackupError(f"{archive}: paths/{name} is not a {kind}")
    return Verified(contents, seen)
