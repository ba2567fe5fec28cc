"""Apply the trust verdicts to nio's device store, so room keys reach only trusted devices.

nio shares a room key with a device when it is *verified* or *ignored*, never when it is
*blacklisted*, and refuses to send while some device is none of these. After every key query
(the raw answer carries the cross-signing keys nio drops) this marks each device of the users
in the answer: cross-signed by a pinned identity -> verified, anything else -> blacklisted.
nio invalidates the room's outbound session on every change, so a device that becomes trusted
gets the next key and one that stops being trusted does not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from bot.config import TrustMode
from bot.crypto.keyfiles import PinStore
from bot.crypto.signing import Json
from bot.crypto.trust import PinOutcome, UserTrust, Verdict, evaluate_user

logger = logging.getLogger(__name__)


class DeviceTrust:
    """Keeps nio's verified/blacklisted marks in line with cross-signing and TOFU pins.

    Args:
        client: the logged-in nio AsyncClient (its device store and trust methods).
        pins: the trust-on-first-use store.
        own_master: our own master key (our own devices are judged against it, never pinned).
        mode: `TrustMode.ALL` marks nothing (the shell then sends with
            ``ignore_unverified_devices``) and lifts earlier blacklisting.
    """

    def __init__(self, client: Any, pins: PinStore, own_master: str, mode: TrustMode) -> None:
        self._client = client
        self._pins = pins
        self._own_master = own_master
        self._mode = mode
        self.on_identity_change: Callable[[str], object] | None = None
        """Called with a user id the first time their new master key is seen (not pinned)."""

    @property
    def pins(self) -> PinStore:
        return self._pins

    @property
    def mode(self) -> TrustMode:
        return self._mode

    def apply_query(self, answer: Json) -> list[UserTrust]:
        """Judge every user in a raw /keys/query answer and mark their devices."""
        device_keys = answer.get("device_keys")
        if not isinstance(device_keys, dict):
            return []
        return [self._apply_user(user_id, answer) for user_id in device_keys]

    def unjudged_users(self, user_ids: Iterable[str]) -> set[str]:
        """Users with a known device that carries no mark yet (would make nio refuse to send)."""
        if self._mode is TrustMode.ALL:
            return set()
        store = self._client.device_store
        own_device = self._client.device_id
        found = set()
        for user_id in user_ids:
            for device in store.active_user_devices(user_id):
                if device.id == own_device and user_id == self._client.user_id:
                    continue
                if not (device.verified or device.blacklisted):
                    found.add(user_id)
        return found

    def blacklist_unjudged(self, user_ids: Iterable[str]) -> None:
        """Last resort before sending: a device nobody could judge does not get keys."""
        for user_id in self.unjudged_users(user_ids):
            for device in self._client.device_store.active_user_devices(user_id):
                if not (device.verified or device.blacklisted):
                    if device.id == self._client.device_id:
                        continue
                    self._client.blacklist_device(device)
                    logger.warning(
                        "Not sharing room keys with device %s of %s: its keys could not be checked",
                        device.id,
                        user_id,
                    )

    def _pinned_for(self, user_id: str) -> str | None:
        if user_id == self._client.user_id:
            return self._own_master
        return self._pins.get(user_id)

    def _apply_user(self, user_id: str, answer: Json) -> UserTrust:
        trust = evaluate_user(user_id, answer, self._pinned_for(user_id))
        if user_id != self._client.user_id and trust.master_public is not None:
            if trust.pin is PinOutcome.PINNED_NOW:
                self._pins.pin(user_id, trust.master_public)
                logger.info("Pinned the cross-signing identity of %s on first use", user_id)
            elif trust.pin is PinOutcome.CHANGED and self._pins.flag_change(
                user_id, trust.master_public
            ):
                logger.warning(
                    "The cross-signing identity of %s changed (master key %s, pinned %s): "
                    "their devices get no room keys until they confirm it from an earlier "
                    "session or an operator accepts it (`caducee bot accept-identity %s`)",
                    user_id,
                    trust.master_public,
                    self._pins.get(user_id),
                    user_id,
                )
                if self.on_identity_change is not None:
                    self.on_identity_change(user_id)
        store = self._client.device_store
        if user_id not in store.users:
            return trust
        for device in list(store.active_user_devices(user_id)):
            if user_id == self._client.user_id and device.id == self._client.device_id:
                continue
            verdict = trust.devices.get(device.id, Verdict.BAD_DEVICE_KEYS)
            self._mark(device, verdict)
            if verdict is Verdict.CROSS_SIGNED and user_id != self._client.user_id:
                self._pins.vouch(user_id, device.curve25519)
        return trust

    def _mark(self, device: Any, verdict: Verdict) -> None:
        client = self._client
        if self._mode is TrustMode.ALL:
            if device.blacklisted:
                client.unblacklist_device(device)
            return
        if verdict is Verdict.CROSS_SIGNED:
            if not device.verified and client.verify_device(device):
                logger.info("Sharing room keys with device %s of %s", device.id, device.user_id)
        elif not device.blacklisted and client.blacklist_device(device):
            logger.info(
                "Not sharing room keys with device %s of %s: %s",
                device.id,
                device.user_id,
                verdict.value,
            )
