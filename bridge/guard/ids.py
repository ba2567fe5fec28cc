"""Matrix server names and user IDs, by the grammar of the Matrix specification's appendix.

One definition for the guard (loaded by Synapse), the bridge and the bot; standard library only,
so the guard may import it and the bot may use it without the bridge's server code.

    server_name = hostname [ ":" port ]          port: 1 to 65535 (the spec: 1*5DIGIT)
    hostname    = IPv4address / "[" IPv6address "]" / dns-name
    IPv6address = 2*45 of 0-9 A-F a-f ":" "."
    dns-name    = up to 255 of 0-9 A-Z a-z "-" "."; here it also starts and ends with a letter
                  or digit (the spec allows any; no resolvable name does otherwise)
    user_id     = "@" localpart ":" server_name, at most 255 characters; the localpart of a
                  historical user ID is any of %x21-39 / %x3B-7E (printable ASCII but ":")

Callers keep their own contract for a malformed ID (None, "" or an error): the functions here
answer None or False and never raise.
"""

from __future__ import annotations

import re
from typing import Final

_SERVER_NAME: Final = re.compile(
    r"(?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9](?:[A-Za-z0-9\-.]{0,253}[A-Za-z0-9])?)"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
_HISTORICAL_LOCALPART: Final = re.compile(r"[!-9;-~]+")
USER_ID_MAX_LENGTH: Final = 255


def is_valid_server_name(name: str) -> bool:
    """Whether ``name`` is a Matrix server name: host (DNS name, IPv4, [IPv6]) and optional port."""
    match = _SERVER_NAME.fullmatch(name)
    if match is None:
        return False
    port = match.group("port")
    return port is None or 0 < int(port) < 65536


def server_part(matrix_id: str) -> str | None:
    """Everything after the first colon of a user, room or event ID (a server name may carry a
    port: ``@a:localhost:8481`` -> ``localhost:8481``), or None when there is none."""
    _, sep, server = matrix_id.partition(":")
    return server if sep and server else None


def user_id_parts(user_id: str) -> tuple[str, str] | None:
    """(localpart, server) of ``@localpart:server`` with both non-empty, unchecked otherwise."""
    if not user_id.startswith("@"):
        return None
    local, sep, server = user_id[1:].partition(":")
    return (local, server) if sep and local and server else None


def user_id_server(user_id: str) -> str | None:
    """The server name of ``@localpart:server`` when it is a valid server name, else None."""
    parts = user_id_parts(user_id)
    return parts[1] if parts is not None and is_valid_server_name(parts[1]) else None


def is_valid_user_id(user_id: str) -> bool:
    """Whether ``user_id`` is a user ID by the historical grammar (the current one is a subset)."""
    parts = user_id_parts(user_id)
    return (
        parts is not None
        and len(user_id) <= USER_ID_MAX_LENGTH
        and _HISTORICAL_LOCALPART.fullmatch(parts[0]) is not None
        and is_valid_server_name(parts[1])
    )
