"""Cross-signing key sets and the JSON the homeserver expects, as pure functions.

A user's identity is three Ed25519 keys: the *master* key (the identity itself), the
*self-signing* key (signed by the master; signs the user's own devices) and the *user-signing*
key (signed by the master; signs other users' master keys). A device is "cross-signed by its
owner" when its device keys carry a valid signature by a self-signing key that carries a valid
signature by the owner's master key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.crypto.signing import ED25519, Json, KeyFormatError, SigningKey, sign_json

USAGE_MASTER = "master"
USAGE_SELF_SIGNING = "self_signing"
USAGE_USER_SIGNING = "user_signing"


@dataclass(frozen=True)
class CrossSigningKeys:
    """A user's three private cross-signing keys."""

    master: SigningKey
    self_signing: SigningKey
    user_signing: SigningKey

    @classmethod
    def generate(cls) -> CrossSigningKeys:
        return cls(SigningKey.generate(), SigningKey.generate(), SigningKey.generate())

    def to_seeds(self) -> dict[str, str]:
        """The seeds as stored on disk (unpadded base64), keyed by usage."""
        return {
            USAGE_MASTER: self.master.seed_b64,
            USAGE_SELF_SIGNING: self.self_signing.seed_b64,
            USAGE_USER_SIGNING: self.user_signing.seed_b64,
        }

    @classmethod
    def from_seeds(cls, seeds: Any) -> CrossSigningKeys:
        """Parse what `to_seeds` produced; raises KeyFormatError with a readable reason."""
        if not isinstance(seeds, dict):
            raise KeyFormatError("the cross-signing key file must hold a JSON object")
        try:
            return cls(
                SigningKey.from_seed_b64(seeds[USAGE_MASTER]),
                SigningKey.from_seed_b64(seeds[USAGE_SELF_SIGNING]),
                SigningKey.from_seed_b64(seeds[USAGE_USER_SIGNING]),
            )
        except KeyError as exc:
            raise KeyFormatError(f"the cross-signing key file lacks the {exc} key") from exc


def cross_signing_key_json(user_id: str, usage: str, key: SigningKey) -> Json:
    """The unsigned public JSON of one cross-signing key."""
    return {"user_id": user_id, "usage": [usage], "keys": {key.key_id: key.public_b64}}


def device_signing_upload_body(user_id: str, keys: CrossSigningKeys) -> Json:
    """Body of ``POST /keys/device_signing/upload``: the master key, and the two others
    signed by it (without ``auth``, which the user-interactive flow adds)."""
    master = cross_signing_key_json(user_id, USAGE_MASTER, keys.master)
    ssk = sign_json(
        cross_signing_key_json(user_id, USAGE_SELF_SIGNING, keys.self_signing),
        user_id,
        keys.master,
    )
    usk = sign_json(
        cross_signing_key_json(user_id, USAGE_USER_SIGNING, keys.user_signing),
        user_id,
        keys.master,
    )
    return {"master_key": master, "self_signing_key": ssk, "user_signing_key": usk}


def device_signature_upload_body(user_id: str, device_keys: Json, ssk: SigningKey) -> Json:
    """Body of ``POST /keys/signatures/upload`` that signs one of the user's own devices.

    `device_keys` is the device's key object as ``/keys/query`` returns it; the signature
    covers it without ``signatures``/``unsigned``, and the homeserver needs the whole signed
    object back (it checks it matches the stored one).
    """
    device_id = device_keys["device_id"]
    unsigned_free = {k: v for k, v in device_keys.items() if k != "unsigned"}
    signed = sign_json(unsigned_free, user_id, ssk)
    return {user_id: {device_id: signed}}


def single_ed25519_key(key_json: Any) -> str | None:
    """The public key of a cross-signing key JSON (it must hold exactly one Ed25519 key)."""
    if not isinstance(key_json, dict):
        return None
    keys = key_json.get("keys")
    if not isinstance(keys, dict) or len(keys) != 1:
        return None
    ((key_id, public),) = keys.items()
    if not isinstance(key_id, str) or not isinstance(public, str):
        return None
    algorithm, _, kid = key_id.partition(":")
    if algorithm != ED25519 or kid != public:
        return None
    return public


def has_usage(key_json: Any, user_id: str, usage: str) -> bool:
    """Whether a cross-signing key JSON belongs to `user_id` and declares `usage`."""
    if not isinstance(key_json, dict) or key_json.get("user_id") != user_id:
        return False
    usages = key_json.get("usage")
    return isinstance(usages, list) and usage in usages
