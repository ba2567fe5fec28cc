"""The deployment's one settings file (`.env`): read it, and fill in its secrets.

Standard library only, so `deploy/production/generate-secrets` runs with a bare `python3` on a
host that has nothing else installed. The file is written 0600: it holds every secret of the
deployment (database and Redis passwords, Synapse's secrets, the bot's password, the bridge's
service token).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from pathlib import Path

SECRET_KEYS: dict[str, int] = {
    # name -> bytes of randomness (hex encoded: safe in YAML, URLs and shell)
    "POSTGRES_PASSWORD": 24,
    "REDIS_PASSWORD": 24,
    "SYNAPSE_MACAROON_SECRET_KEY": 32,
    "SYNAPSE_FORM_SECRET": 32,
    "SYNAPSE_REGISTRATION_SHARED_SECRET": 32,
    "SYNAPSE_WORKER_REPLICATION_SECRET": 32,
    "CADUCEE_BOT_PASSWORD": 24,
    "CADUCEE_BRIDGE_BOT_TOKEN": 32,
}
"""Secrets `generate-secrets` creates; an operator never has to invent one."""


class EnvFileError(Exception):
    """The settings file cannot be used; the message is meant for the operator."""


def parse_env(text: str, source: str = ".env") -> dict[str, str]:
    """KEY=VALUE lines (compose's format); comments and blank lines ignored, quotes removed."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "").isalnum() or key[0].isdigit():
            raise EnvFileError(f"{source}, line {number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def read_env(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EnvFileError(
            f"{path}: no such file (copy .env.example to .env, then run generate-secrets)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:  # the same words as `deploy secrets`
        reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else exc.strerror
        raise EnvFileError(f"{path}: cannot read: {reason or exc}") from None
    return parse_env(text, str(path))


class EnvWriteError(EnvFileError):
    """The settings were read but could not be written back; the file is unchanged."""


def write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with a 0600 file; `EnvWriteError` leaves it as it was."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise EnvWriteError(f"{path}: cannot write: {exc.strerror or exc}") from None


def fill_secrets(env_path: Path, example_path: Path | None = None) -> list[str]:
    """Give every empty secret of `env_path` a random value; returns the names filled.

    A missing `.env` starts as a copy of `.env.example`. Secrets that already have a value are
    kept (regenerating them would lock the services out of their own database).
    """
    source = env_path
    try:
        if not env_path.exists():
            if example_path is None or not example_path.exists():
                raise EnvFileError(f"{env_path}: no such file, and no .env.example to start from")
            source = example_path
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else exc.strerror
        raise EnvFileError(f"{source}: cannot read: {reason or exc}") from None
    parse_env(text, str(env_path))  # refuse to rewrite a file we cannot read back
    filled: list[str] = []
    lines = []
    seen: set[str] = set()
    for raw in text.splitlines():
        key, sep, value = raw.partition("=")
        name = key.strip()
        if sep and name in SECRET_KEYS and not raw.lstrip().startswith("#"):
            seen.add(name)
            if not value.strip().strip("'\""):
                raw = f"{name}={secrets.token_hex(SECRET_KEYS[name])}"
                filled.append(name)
        lines.append(raw)
    for name, size in SECRET_KEYS.items():
        if name not in seen:
            lines.append(f"{name}={secrets.token_hex(size)}")
            filled.append(name)
    write_private(env_path, "\n".join(lines) + "\n")
    return filled


def main(argv: list[str]) -> int:
    """`generate-secrets [ENV_FILE]`: fill the secrets of ENV_FILE (default: .env here)."""
    here = Path(__file__).resolve().parent
    default = Path.cwd() / ".env"
    env_path = Path(argv[0]) if argv else default
    example = here / ".env.example"
    try:
        filled = fill_secrets(env_path, example)
    except EnvWriteError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except EnvFileError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    if filled:
        print(f"{env_path}: generated {', '.join(filled)} (file mode 0600; never commit it)")
    else:
        print(f"{env_path}: every secret already has a value; nothing changed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
