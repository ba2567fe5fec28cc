"""Secret files of the bot: private directory, 0600 files, cross-signing seeds, pinned keys.

Everything here is written atomically (temporary file created 0600, then renamed) so a crash
never leaves a half-written key file and a secret is never readable by others, not even for an
instant.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
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


class PinStore:
    """Trust-on-first-use pins: the first master key seen for each user, kept on disk.

    A changed key is recorded under ``changed`` (for operators and the log) and the pin is
    kept: the user's devices stay untrusted until `forget` is called for them (the
    ``caducee bot forget-identity`` command), after which the next key seen is pinned.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        data = read_json_file(path) or {}
        pinned = data.get("pinned", {}) if isinstance(data, dict) else {}
        changed = data.get("changed", {}) if isinstance(data, dict) else {}
        self._pinned: dict[str, str] = {str(k): str(v) for k, v in pinned.items()}
        self._changed: dict[str, str] = {str(k): str(v) for k, v in changed.items()}

    def get(self, user_id: str) -> str | None:
        return self._pinned.get(user_id)

    def changed(self) -> dict[str, str]:
        """Users whose published master key differs from the pin (user -> key seen)."""
        return dict(self._changed)

    def pin(self, user_id: str, master_public: str) -> None:
        self._pinned[user_id] = master_public
        self._changed.pop(user_id, None)
        self._save()

    def flag_change(self, user_id: str, seen_public: str) -> bool:
        """Record a changed key; returns True when this change is new (log it once)."""
        if self._changed.get(user_id) == seen_public:
            return False
        self._changed[user_id] = seen_public
        self._save()
        return True

    def forget(self, user_id: str) -> bool:
        found = self._pinned.pop(user_id, None) is not None
        self._changed.pop(user_id, None)
        self._save()
        return found

    def _save(self) -> None:
        body = {"pinned": self._pinned, "changed": self._changed}
        write_private_file(self._path, json.dumps(body, indent=1, sort_keys=True) + "\n")
