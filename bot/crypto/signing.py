"""Ed25519 keys and Matrix JSON signatures, as pure functions.

Matrix signs the canonical JSON of an object *without* its ``signatures`` and ``unsigned``
members, and stores the signature under ``signatures[user_id]["ed25519:<key id>"]``. For
cross-signing keys the key id is the unpadded base64 public key itself; for device keys it is
the device id. Keys are kept as 32-byte seeds in unpadded base64 (what ``from_seed`` takes).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import nacl.exceptions
import nacl.signing
from canonicaljson import encode_canonical_json
from unpaddedbase64 import decode_base64, encode_base64

Json = dict[str, Any]

ED25519 = "ed25519"


class KeyFormatError(ValueError):
    """A stored or received key is not a valid unpadded-base64 Ed25519 key."""


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key, known by its seed (never logged, never put in a repr)."""

    seed: bytes

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise KeyFormatError("an Ed25519 seed is 32 bytes")

    def __repr__(self) -> str:
        return f"SigningKey(public={self.public_b64})"

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @classmethod
    def from_seed_b64(cls, seed_b64: str) -> SigningKey:
        try:
            seed = decode_base64(seed_b64)
        except (ValueError, TypeError) as exc:
            raise KeyFormatError("a key seed must be unpadded base64") from exc
        return cls(seed)

    @property
    def seed_b64(self) -> str:
        return str(encode_base64(self.seed))

    @property
    def public_b64(self) -> str:
        verify_key = nacl.signing.SigningKey(self.seed).verify_key
        return str(encode_base64(bytes(verify_key)))

    @property
    def key_id(self) -> str:
        """``ed25519:<public key>``, the id cross-signing keys are known by."""
        return f"{ED25519}:{self.public_b64}"

    def sign_bytes(self, message: bytes) -> str:
        signature = nacl.signing.SigningKey(self.seed).sign(message).signature
        return str(encode_base64(signature))


def signable_bytes(obj: Json) -> bytes:
    """The bytes Matrix signs: canonical JSON without ``signatures`` and ``unsigned``."""
    stripped = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    return bytes(encode_canonical_json(stripped))


def sign_json(obj: Json, signer: str, key: SigningKey, key_id: str | None = None) -> Json:
    """A deep copy of `obj` with `key`'s signature added under ``signatures[signer]``.

    `key_id` defaults to ``ed25519:<public key>`` (cross-signing keys); pass
    ``ed25519:<device id>`` for a device's own key. Existing signatures are kept.
    """
    signed = copy.deepcopy(obj)
    kid = key_id or key.key_id
    sig = key.sign_bytes(signable_bytes(obj))
    signed.setdefault("signatures", {}).setdefault(signer, {})[kid] = sig
    return signed


def verify_signature(obj: Json, signer: str, key_id: str, public_b64: str) -> bool:
    """Whether ``obj.signatures[signer][key_id]`` is a valid signature by `public_b64`.

    Never raises on malformed input: a missing, non-string or undecodable signature or key is
    simply not a valid signature.
    """
    try:
        sig_b64 = obj["signatures"][signer][key_id]
        if not isinstance(sig_b64, str) or not isinstance(public_b64, str):
            return False
        verify_key = nacl.signing.VerifyKey(decode_base64(public_b64))
        verify_key.verify(signable_bytes(obj), decode_base64(sig_b64))
    except (KeyError, TypeError, ValueError, nacl.exceptions.CryptoError):
        return False
    return True
