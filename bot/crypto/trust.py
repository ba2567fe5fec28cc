"""Who is cross-signed: chain verification and trust-on-first-use, as pure functions.

Input is the JSON of ``POST /keys/query`` (``device_keys``, ``master_keys``,
``self_signing_keys``), exactly as the homeserver returns it. A device is trusted when its
owner's master key is the one we pinned (first seen, or our own), the owner's self-signing key
carries a valid signature by that master key, and the device keys carry valid signatures by
both the self-signing key and the device's own Ed25519 key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bot.crypto.cross_signing import (
    USAGE_MASTER,
    USAGE_SELF_SIGNING,
    has_usage,
    single_ed25519_key,
)
from bot.crypto.signing import ED25519, Json, verify_signature


class Verdict(StrEnum):
    """Why a device gets (or does not get) room keys. Values are log-friendly phrases."""

    CROSS_SIGNED = "cross-signed by its owner"
    NO_IDENTITY = "its owner has no cross-signing identity"
    BAD_SELF_SIGNING = "its owner's self-signing key is not signed by their master key"
    NOT_SIGNED = "not signed by its owner's self-signing key"
    BAD_DEVICE_KEYS = "its device keys are malformed or not self-signed"
    IDENTITY_CHANGED = "its owner's master key changed since first seen"


class PinOutcome(StrEnum):
    """What trust-on-first-use makes of the master key seen for a user."""

    NONE = "no master key published"
    PINNED_NOW = "first seen, pinned"
    MATCHES = "matches the pinned key"
    CHANGED = "differs from the pinned key"


@dataclass(frozen=True)
class UserIdentity:
    """A user's published identity: master key, and self-signing key if validly signed."""

    user_id: str
    master_public: str | None
    self_signing_public: str | None


@dataclass(frozen=True)
class UserTrust:
    """The verdict for each device of one user, and what to do with the pin."""

    user_id: str
    pin: PinOutcome
    master_public: str | None
    devices: dict[str, Verdict] = field(default_factory=dict)

    def trusted_devices(self) -> frozenset[str]:
        return frozenset(d for d, v in self.devices.items() if v is Verdict.CROSS_SIGNED)


def _section(response: Json, name: str, user_id: str) -> Any:
    section = response.get(name)
    return section.get(user_id) if isinstance(section, dict) else None


def identity_from_query(user_id: str, response: Json) -> UserIdentity:
    """Extract and check a user's master and self-signing keys from a /keys/query answer."""
    master_json = _section(response, "master_keys", user_id)
    master = (
        single_ed25519_key(master_json) if has_usage(master_json, user_id, USAGE_MASTER) else None
    )
    if master is None:
        return UserIdentity(user_id, None, None)
    ssk_json = _section(response, "self_signing_keys", user_id)
    ssk = single_ed25519_key(ssk_json) if has_usage(ssk_json, user_id, USAGE_SELF_SIGNING) else None
    if ssk is None or not verify_signature(ssk_json, user_id, f"{ED25519}:{master}", master):
        return UserIdentity(user_id, master, None)
    return UserIdentity(user_id, master, ssk)


def device_self_signed(user_id: str, device_id: str, device_keys: Any) -> bool:
    """Whether a device key object is well formed and signed by the device's own key."""
    if not isinstance(device_keys, dict):
        return False
    if device_keys.get("user_id") != user_id or device_keys.get("device_id") != device_id:
        return False
    keys = device_keys.get("keys")
    if not isinstance(keys, dict):
        return False
    own = keys.get(f"{ED25519}:{device_id}")
    if not isinstance(own, str):
        return False
    return verify_signature(device_keys, user_id, f"{ED25519}:{device_id}", own)


def device_signed_by(user_id: str, device_keys: Any, self_signing_public: str) -> bool:
    """Whether a device key object carries a valid signature by the self-signing key."""
    if not isinstance(device_keys, dict):
        return False
    return verify_signature(
        device_keys, user_id, f"{ED25519}:{self_signing_public}", self_signing_public
    )


def pin_decision(pinned: str | None, seen: str | None) -> PinOutcome:
    """Trust on first use: the first master key seen is pinned; a different one is flagged."""
    if seen is None:
        return PinOutcome.NONE
    if pinned is None:
        return PinOutcome.PINNED_NOW
    return PinOutcome.MATCHES if pinned == seen else PinOutcome.CHANGED


def device_verdict(identity: UserIdentity, device_id: str, device_keys: Any) -> Verdict:
    """The verdict for one device, assuming the owner's master key is trusted."""
    if not device_self_signed(identity.user_id, device_id, device_keys):
        return Verdict.BAD_DEVICE_KEYS
    if identity.master_public is None:
        return Verdict.NO_IDENTITY
    if identity.self_signing_public is None:
        return Verdict.BAD_SELF_SIGNING
    if not device_signed_by(identity.user_id, device_keys, identity.self_signing_public):
        return Verdict.NOT_SIGNED
    return Verdict.CROSS_SIGNED


def evaluate_user(user_id: str, response: Json, pinned_master: str | None) -> UserTrust:
    """Verdicts for every device of `user_id` listed in a /keys/query answer.

    With a changed master key every device is refused (``IDENTITY_CHANGED``) until an operator
    accepts the new key: a stolen or reset account must not silently receive case keys.
    """
    identity = identity_from_query(user_id, response)
    pin = pin_decision(pinned_master, identity.master_public)
    devices_json = _section(response, "device_keys", user_id)
    devices: dict[str, Verdict] = {}
    if isinstance(devices_json, dict):
        for device_id, keys in devices_json.items():
            if pin is PinOutcome.CHANGED:
                devices[device_id] = Verdict.IDENTITY_CHANGED
            else:
                devices[device_id] = device_verdict(identity, device_id, keys)
    return UserTrust(user_id, pin, identity.master_public, devices)


@dataclass(frozen=True)
class OwnPlan:
    """What the bot must do to have its own device cross-signed.

    Attributes:
        generate: no usable local keys (first start, or lost): make new ones.
        upload: publish the local (or new) keys with /keys/device_signing/upload.
        foreign_master: the master key the server holds that is not ours (reset elsewhere,
            or our key file was lost), else None.
        sign_device: upload a self-signing signature of our device.
        device_published: False when the server does not list our device keys yet (nio
            uploads them on the first sync); signing must wait until it does.
    """

    generate: bool
    upload: bool
    foreign_master: str | None
    sign_device: bool
    device_published: bool

    @property
    def nothing_to_do(self) -> bool:
        return not (self.generate or self.upload or self.sign_device)


def plan_own_cross_signing(
    user_id: str,
    device_id: str,
    response: Json,
    local_master: str | None,
    local_self_signing: str | None,
) -> OwnPlan:
    """Decide from our own /keys/query answer what to (re)do; idempotent when all is done."""
    identity = identity_from_query(user_id, response)
    device_json = (_section(response, "device_keys", user_id) or {}).get(device_id)
    published = device_self_signed(user_id, device_id, device_json)
    server_master = identity.master_public
    foreign = server_master if server_master not in (None, local_master) else None
    generate = local_master is None or local_self_signing is None
    upload = (
        generate
        or server_master != local_master
        or identity.self_signing_public != local_self_signing
    )
    if upload:
        sign = published
    else:
        assert local_self_signing is not None
        sign = published and not device_signed_by(user_id, device_json, local_self_signing)
    return OwnPlan(generate, upload, foreign, sign, published)
