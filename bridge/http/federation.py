"""Finding another homeserver's federation endpoint from its server name.

Follows the Matrix server-discovery rules, minus DNS SRV records: an IP literal or an explicit
port is used as is; otherwise `https://<host>/.well-known/matrix/server` may delegate to another
host; otherwise port 8448. Operators whose peers rely on SRV records list them in the
configuration's `openid_server_urls` instead.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections import OrderedDict
from pathlib import Path
from typing import Final

import aiohttp

from bridge.config import is_valid_server_name

logger = logging.getLogger(__name__)

DEFAULT_FEDERATION_PORT: Final = 8448
WELL_KNOWN_TIMEOUT: Final = aiohttp.ClientTimeout(total=5)
RESOLUTION_TTL_SECONDS: Final = 3600.0
MAX_RESOLUTIONS: Final = 1000


def split_server_name(server_name: str) -> tuple[str, int | None]:
    """Host and explicit port of a server name (`[::1]:8448` -> (`[::1]`, 8448))."""
    if server_name.startswith("["):
        host, _, rest = server_name.partition("]")
        port = rest.removeprefix(":")
        return host + "]", int(port) if port else None
    host, sep, port = server_name.partition(":")
    return host, int(port) if sep else None


def is_ip_literal(host: str) -> bool:
    return host.startswith("[") or all(part.isdigit() for part in host.split("."))


def direct_base_url(server_name: str) -> str | None:
    """The base URL when discovery needs no network: IP literal or explicit port."""
    host, port = split_server_name(server_name)
    if port is not None:
        return f"https://{host}:{port}"
    if is_ip_literal(host):
        return f"https://{host}:{DEFAULT_FEDERATION_PORT}"
    return None


def delegated_base_url(m_server: str) -> str | None:
    """The base URL from a `.well-known/matrix/server` `m.server` value, None if malformed."""
    if not is_valid_server_name(m_server):
        return None
    host, port = split_server_name(m_server)
    return f"https://{host}:{port or DEFAULT_FEDERATION_PORT}"


def federation_ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """System trust store, plus the federation's private CA when one is configured."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


class FederationResolver:
    """Resolves server names to federation base URLs, remembering answers for an hour."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self._http = http
        self._known: OrderedDict[str, tuple[float, str]] = OrderedDict()

    async def base_url(self, server_name: str) -> str:
        direct = direct_base_url(server_name)
        if direct is not None:
            return direct
        known = self._known.get(server_name)
        if known is not None and known[0] > time.monotonic():
            return known[1]
        url = await self._well_known(server_name) or (
            f"https://{server_name}:{DEFAULT_FEDERATION_PORT}"
        )
        self._known[server_name] = (time.monotonic() + RESOLUTION_TTL_SECONDS, url)
        while len(self._known) > MAX_RESOLUTIONS:
            self._known.popitem(last=False)
        return url

    async def _well_known(self, host: str) -> str | None:
        try:
            async with self._http.get(
                f"https://{host}/.well-known/matrix/server",
                timeout=WELL_KNOWN_TIMEOUT,
                allow_redirects=True,
            ) as response:
                if response.status != 200:
                    return None
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            logger.info("No usable .well-known/matrix/server for %s", host)
            return None
        m_server = body.get("m.server") if isinstance(body, dict) else None
        return delegated_base_url(m_server) if isinstance(m_server, str) else None
