"""Speaking the server-server API as a homeserver of the local federation would: requests
signed with its own signing key (X-Matrix authorisation), over TLS trusting the local CA.

An attacker who runs an outsider homeserver holds exactly this: its key, a certificate the
members trust, and any path it likes. Tests use it to try every federation endpoint.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from signedjson.key import read_signing_keys
from signedjson.sign import sign_json
from signedjson.types import SigningKey
from yarl import URL

from deploy.local.federation import Homeserver


@dataclass
class FederationReply:
    status: int
    body: dict[str, Any]


class SignedFederationClient:
    """Signs requests as `origin` with `key`; trusts the certificates of `ca_cert`."""

    def __init__(self, origin: str, key: SigningKey, ca_cert: Path) -> None:
        self._key = key
        self.origin = origin
        self.ssl = ssl.create_default_context(cafile=str(ca_cert))

    @classmethod
    def of(cls, hs: Homeserver, claimed_origin: str | None = None) -> SignedFederationClient:
        """As `hs`, with its own signing key (claiming another name if asked)."""
        with open(hs.data_dir / "signing.key") as handle:
            (key,) = read_signing_keys(handle)
        return cls(claimed_origin or hs.server_name, key, hs.ca.cert)

    def authorization(self, method: str, destination: str, uri: str, content: Any | None) -> str:
        request: dict[str, Any] = {
            "method": method,
            "uri": uri,
            "origin": self.origin,
            "destination": destination,
        }
        if content is not None:
            request["content"] = content
        signed = sign_json(request, self.origin, self._key)
        key_id, signature = next(iter(signed["signatures"][self.origin].items()))
        return (
            f'X-Matrix origin="{self.origin}",destination="{destination}",'
            f'key="{key_id}",sig="{signature}"'
        )

    async def request(
        self,
        http: aiohttp.ClientSession,
        method: str,
        destination: Homeserver | str,
        uri: str,
        content: Any | None = None,
    ) -> FederationReply:
        """`uri` is the path and query exactly as signed (already percent-encoded)."""
        name = destination if isinstance(destination, str) else destination.server_name
        auth = self.authorization(method, name, uri, content)
        url = URL(f"https://{name}{uri}", encoded=True)
        data = None if content is None else json.dumps(content).encode()
        headers = {"Authorization": auth, "Content-Type": "application/json"}
        async with http.request(method, url, data=data, headers=headers, ssl=self.ssl) as response:
            try:
                body = await response.json(content_type=None)
            except (json.JSONDecodeError, UnicodeDecodeError):
                body = {}
            return FederationReply(response.status, body if isinstance(body, dict) else {})
