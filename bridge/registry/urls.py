"""Which peer bridge URLs the registry accepts: https, or plain http on this machine only.

A peer's manifest is signed, so plain HTTP cannot forge it; but whoever sits on the path can
hold back every update (a homeserver the peer removed stays allowed until the manifest
expires) and sees who peers with whom. So a peer is reached over https, except on loopback
(127.0.0.0/8, ::1, localhost), where the demo and the tests run several bridges on one
machine and nothing travels on a network. Pure: the CLI, the console and the refresher all
ask `url_refusal`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final
from urllib.parse import urlsplit

_URL: Final = re.compile(r"^https?://[^/\s?#@]+(?:/[^\s?#]*)?$", re.IGNORECASE)
EXAMPLE: Final = "https://bridge.other-federation.fr"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost (not names that merely resolve there: DNS can change)."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_refusal(url: str) -> str | None:
    """Why `url` cannot be a peer's bridge URL (None when it can), in words for the admin."""
    value = url.strip()
    if not _URL.match(value):
        return f"{url!r} is not a bridge URL (like {EXAMPLE!r})"
    parts = urlsplit(value)
    try:
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return f"{url!r} is not a bridge URL (like {EXAMPLE!r})"
    if parts.scheme.lower() == "https" or is_loopback(host):
        return None
    return (
        f"{url!r} uses plain http: a peer bridge is reached over https (like {EXAMPLE!r}); "
        "plain http is only accepted on this machine (127.0.0.1, ::1, localhost)"
    )
