"""The federation's signing key: one Ed25519 key per federation, made on first start.

The file uses Synapse's signing-key format (`ed25519 <key id> <unpadded base64 seed>`, one
line), is created with mode 0600 and refused if anyone but its owner can read it: whoever
holds it can publish a manifest that every peer trusts.

The *fingerprint* admins exchange to peer is the public key itself, unpadded base64 (43
characters): the same encoding Matrix uses for server keys, short enough to read over the
phone, and enough to verify a manifest without trusting anything the peer sends.
"""

from __future__ import annotations

import binascii
import os
import secrets
import stat
from pathlib import Path
from typing import Final

from signedjson.key import (
    decode_verify_key_bytes,
    generate_signing_key,
    get_verify_key,
    read_signing_keys,
    write_signing_keys,
)
from signedjson.types import SigningKey, VerifyKey
from unpaddedbase64 import decode_base64, encode_base64

from bridge.registry.model import Fingerprint

ALGORITHM: Final = "ed25519"
PUBLIC_KEY_BYTES: Final = 32


class KeyFileError(Exception):
    """The signing key file cannot be used; the message is for the operator."""


def fingerprint_of(key: SigningKey) -> Fingerprint:
    return Fingerprint(encode_base64(get_verify_key(key).encode()))


def key_id(key: SigningKey) -> str:
    return f"{key.alg}:{key.version}"


def parse_fingerprint(text: str) -> Fingerprint:
    """Check a fingerprint typed by an admin; ValueError with a readable message otherwise."""
    value = text.strip()
    try:
        raw = decode_base64(value)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != PUBLIC_KEY_BYTES or encode_base64(raw) != value:
        raise ValueError(
            f"{text!r} is not a federation key fingerprint (43 characters of unpadded base64, "
            "as `caducee admin key show` prints it)"
        )
    return Fingerprint(value)


def verify_key_for(fingerprint: Fingerprint, key_id: str) -> VerifyKey:
    """The public key a fingerprint stands for, labelled with `key_id` (`ed25519:<version>`)."""
    return decode_verify_key_bytes(key_id, decode_base64(fingerprint))


def load_or_create(path: Path) -> SigningKey:
    """The key in `path`, created (0600, parent folder 0700) when the file does not exist."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = generate_signing_key(secrets.token_hex(3))
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it meanwhile: read theirs
        else:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                write_signing_keys(handle, [key])
            return key
    return load(path)


def load(path: Path) -> SigningKey:
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"{path}: the federation signing key is readable by others "
                f"(mode {stat.S_IMODE(mode):o}); run `chmod 600 {path}`"
            )
        with path.open(encoding="ascii") as handle:
            keys = read_signing_keys(handle)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the signing key: {exc.strerror or exc}") from None
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise KeyFileError(f"{path}: not a signing key file ('ed25519 <id> <seed>')") from None
    if len(keys) != 1 or keys[0].alg != ALGORITHM:
        raise KeyFileError(f"{path}: expected exactly one ed25519 key")
    key: SigningKey = keys[0]
    return key
