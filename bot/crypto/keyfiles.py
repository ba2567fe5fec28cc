"""Secret files of the bot: private directory, 0600 files, cross-signing seeds, pinned keys.

Everything here is written atomically (temporary file created 0600, then renamed) so a crash
never leaves a half-written key file and a secret is never readable by others, not even for an
instant.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.crypto.cross_signing import CrossSigningKeys
from bot.crypto.signing import KeyFormatError

logger = logging.getLogger(__name__)

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) if needed and make it 0700."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    path.chmod(PRIVATE_DIR_MODE)
    return path


def ensure_private_file(path: Path) -> Path:
    """Create `path` empty with mode 0600 if absent; force 0600 if present.

    Used before a library (SQLite, nio) opens a file, so it never exists with a wider mode.
    """
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE_MODE)
    os.close(fd)
    path.chmod(PRIVATE_FILE_MODE)
    return path


def write_private_file(path: Path, text: str) -> None:
    """Atomically replace `path` with `text`, mode 0600."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json_file(path: Path) -> Any | None:
    """The JSON in `path`, or None when the file does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise KeyFormatError(f"{path} is not valid JSON (line {exc.lineno})") from exc


def load_cross_signing_keys(path: Path) -> CrossSigningKeys | None:
    """The bot's private cross-signing keys, or None if never created (or lost)."""
    data = read_json_file(path)
    if data is None:
        return None
    return CrossSigningKeys.from_seeds(data)


def save_cross_signing_keys(path: Path, keys: CrossSigningKeys) -> None:
    write_private_file(path, json.dumps(keys.to_seeds(), indent=2) + "\n")


def read_or_create_secret(path: Path, nbytes: int = 32) -> str:
    """A secret kept in `path`: read it, or generate one into a new 0600 file.

    Refuses an existing file that others may read, or one that is empty.
    """
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise PermissionError(
                f"{path} is readable by other users (mode {mode:o}); run: chmod 600 {path}"
            )
        secret = path.read_text(encoding="utf-8").strip()
        if not secret:
            raise ValueError(f"{path} is empty: put a secret in it or delete it to generate one")
        return secret
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(nbytes)
    write_private_file(path, secret + "\n")
    logger.info("Generated a new secret in %s", path)
    return secret


@dataclass(frozen=True)
class PendingReset:
    """A user whose published master key differs from the pinned one, not accepted yet."""

    user_id: str
    pinned: str
    seen: str
    since_ms: int


MAX_VOUCHERS_PER_USER = 32


class PinStore:
    """Trust-on-first-use pins: the first master key seen for each user, kept on disk.

    A changed key is recorded under ``changed`` (with the time it was first seen) and the pin
    is kept: the user's devices stay untrusted until the reset is accepted, either by the
    doctor from a session the pinned identity had cross-signed (``!identity confirm``, see
    `bot.identity`), or by an operator (``caducee bot accept-identity`` /
    ``forget-identity``). ``vouchers`` keeps, per user, the Curve25519 keys of the devices
    the pinned identity cross-signed: a message decrypted from one of them was written on a
    session the homeserver cannot forge.

    The bot and the operator's commands share the file: every change re-reads it first, and
    the running bot calls `refresh` regularly, so an operator's decision applies without a
    restart.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._pinned: dict[str, str] = {}
        self._changed: dict[str, str] = {}
        self._changed_at: dict[str, int] = {}
        self._vouchers: dict[str, list[str]] = {}
        self._locked = False
        self._load()

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def _load(self) -> None:
        self._stamp = self._file_stamp()
        data = read_json_file(self._path) or {}
        if not isinstance(data, dict):
            data = {}

        def section(name: str) -> dict[str, Any]:
            value = data.get(name, {})
            return value if isinstance(value, dict) else {}

        self._pinned = {str(k): str(v) for k, v in section("pinned").items()}
        self._changed = {str(k): str(v) for k, v in section("changed").items()}
        self._changed_at = {
            str(k): int(v) for k, v in section("changed_at").items() if isinstance(v, int)
        }
        self._vouchers = {
            str(k): [str(x) for x in v]
            for k, v in section("vouchers").items()
            if isinstance(v, list)
        }

    def refresh(self) -> set[str]:
        """Re-read the file if someone else (an operator's command) changed it.

        Returns the users whose pin or pending change differs from what was in memory: their
        devices must be judged again.
        """
        if self._file_stamp() == self._stamp:
            return set()
        before = (dict(self._pinned), dict(self._changed))
        self._load()
        users = set(before[0]) | set(self._pinned) | set(before[1]) | set(self._changed)
        return {
            u
            for u in users
            if before[0].get(u) != self._pinned.get(u) or before[1].get(u) != self._changed.get(u)
        }

    def get(self, user_id: str) -> str | None:
        return self._pinned.get(user_id)

    def changed(self) -> dict[str, str]:
        """Users whose published master key differs from the pin (user -> key seen)."""
        return dict(self._changed)

    def pending(self) -> list[PendingReset]:
        """The identity resets waiting for a confirmation, oldest first."""
        found = [
            PendingReset(user, self._pinned.get(user, ""), seen, self._changed_at.get(user, 0))
            for user, seen in self._changed.items()
        ]
        # A stable sort: two resets flagged in the same millisecond keep the order they
        # were flagged in (the file keeps insertion order).
        return sorted(found, key=lambda p: p.since_ms)

    @contextlib.contextmanager
    def _update(self) -> Iterator[None]:
        """Read-modify-write under an exclusive lock on a sibling ``.lock`` file, so the bot
        and an operator's command never overwrite each other's change."""
        if self._locked:
            yield
            return
        fd = os.open(self._path.with_name(self._path.name + ".lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._locked = True
            self.refresh()
            yield
            self._save()
        finally:
            self._locked = False
            os.close(fd)  # releases the lock

    def pin(self, user_id: str, master_public: str) -> None:
        with self._update():
            if self._pinned.get(user_id) != master_public:
                self._vouchers.pop(user_id, None)  # the old identity's devices vouch no more
            self._pinned[user_id] = master_public
            self._changed.pop(user_id, None)
            self._changed_at.pop(user_id, None)

    def flag_change(self, user_id: str, seen_public: str) -> bool:
        """Record a changed key; returns True when this change is new (log it once)."""
        if self._changed.get(user_id) == seen_public:
            return False  # every key query sees it again: no write
        with self._update():
            if self._changed.get(user_id) == seen_public:
                return False
            self._changed[user_id] = seen_public
            self._changed_at[user_id] = int(time.time() * 1000)
        return True

    def accept(self, user_id: str) -> str | None:
        """Pin the pending new key of `user_id`; returns it, or None if nothing was pending."""
        with self._update():
            seen = self._changed.get(user_id)
            if seen is not None:
                self.pin(user_id, seen)
        return seen

    def forget(self, user_id: str) -> bool:
        with self._update():
            found = self._pinned.pop(user_id, None) is not None
            self._changed.pop(user_id, None)
            self._changed_at.pop(user_id, None)
            self._vouchers.pop(user_id, None)
        return found

    def vouch(self, user_id: str, curve25519: str) -> None:
        """Remember a device (by its Curve25519 key) that the pinned identity cross-signed."""
        if curve25519 in self._vouchers.get(user_id, []):
            return
        with self._update():
            keys = [k for k in self._vouchers.get(user_id, []) if k != curve25519]
            self._vouchers[user_id] = [*keys, curve25519][-MAX_VOUCHERS_PER_USER:]

    def vouches(self, user_id: str, curve25519: str | None) -> bool:
        """Whether `curve25519` is a device the pinned identity of `user_id` cross-signed."""
        return curve25519 is not None and curve25519 in self._vouchers.get(user_id, [])

    def _save(self) -> None:
        body = {
            "pinned": self._pinned,
            "changed": self._changed,
            "changed_at": self._changed_at,
            "vouchers": self._vouchers,
        }
        write_private_file(self._path, json.dumps(body, indent=1, sort_keys=True) + "\n")
        self._stamp = self._file_stamp()
