"""The console's device cookie: a browser an admin signed in with before is known again.

After a successful sign-in the browser gets `caducee_console_device`: a random device id and
an HMAC binding it to the admin's Matrix ID. At the next sign-in it puts the browser in its
own rate-limit bucket (bridge.console.ratelimit), so guesses by others, from however many
addresses, never hold the real admin back. The cookie opens nothing by itself: the password
is still checked by the homeserver, and a stolen cookie only gets its own bounded backoff.

The HMAC key is derived from the federation's signing key (domain-separated), so it is
stable across restarts and bridge processes without one more secret file.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

DEVICE_COOKIE: Final = "caducee_console_device"
MAX_AGE_SECONDS: Final = 365 * 24 * 3600
_LABEL: Final = b"caducee console device cookie v1"


def device_key(secret_seed: bytes) -> bytes:
    return hmac.new(secret_seed, _LABEL, hashlib.sha256).digest()


def _mac(key: bytes, account: str, device: str) -> str:
    return hmac.new(key, f"{account}\x00{device}".encode(), hashlib.sha256).hexdigest()[:32]


def issue(key: bytes, account: str) -> str:
    device = secrets.token_urlsafe(16)
    return f"{device}.{_mac(key, account, device)}"


def device_of(key: bytes, account: str, cookie: str | None) -> str | None:
    """The device id if `cookie` was issued to `account` by this federation, else None."""
    if not cookie or len(cookie) > 100:
        return None
    device, _, mac = cookie.partition(".")
    if not device or not hmac.compare_digest(_mac(key, account, device), mac):
        return None
    return device
