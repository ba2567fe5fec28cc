"""The one client of Synapse's admin API used by Caducée (onboarding, local federation).

Only what is needed is here; each call returns parsed JSON or raises `SynapseAdminError`
carrying the Matrix errcode, so callers can tell "user exists" from "server down".
Access tokens and passwords are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp

logger = logging.getLogger(__name__)


class SynapseAdminError(Exception):
    """A call to the homeserver failed; `errcode` is the Matrix error code when there is one."""

    def __init__(self, status: int, errcode: str, message: str) -> None:
        super().__init__(f"{status} {errcode}: {message}")
        self.status = status
        self.errcode = errcode
        self.message = message


@dataclass(frozen=True, slots=True)
class Session:
    """An account signed in on a homeserver."""

    user_id: str
    access_token: str
    device_id: str


def registration_mac(shared_secret: str, nonce: str, user: str, password: str, admin: bool) -> str:
    """HMAC-SHA1 of the shared-secret registration API (`nonce\\0user\\0password\\0admin`)."""
    mac = hmac.new(shared_secret.encode(), digestmod=hashlib.sha1)
    for part in (nonce, user, password):
        mac.update(part.encode())
        mac.update(b"\x00")
    mac.update(b"admin" if admin else b"notadmin")
    return mac.hexdigest()


async def _json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        body = await response.json(content_type=None)
    except (aiohttp.ContentTypeError, ValueError):
        body = None
    if not isinstance(body, dict):
        body = {}
    if response.status >= 400:
        raise SynapseAdminError(
            response.status,
            str(body.get("errcode", "M_UNKNOWN")),
            str(body.get("error", response.reason or "")),
        )
    return body


class SynapseAdmin:
    """Calls to one homeserver's client and admin APIs over an aiohttp session."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str) -> None:
        self._http = http
        self._base = base_url.rstrip("/")

    async def register(
        self,
        shared_secret: str,
        localpart: str,
        password: str,
        *,
        admin: bool = False,
        displayname: str | None = None,
    ) -> Session:
        """Create an account with the shared-secret registration API."""
        url = f"{self._base}/_synapse/admin/v1/register"
        async with self._http.get(url) as response:
            nonce = str((await _json(response))["nonce"])
        body: dict[str, Any] = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": registration_mac(shared_secret, nonce, localpart, password, admin),
        }
        if displayname is not None:
            body["displayname"] = displayname
        async with self._http.post(url, json=body) as response:
            data = await _json(response)
        logger.info("registered %s", data["user_id"])
        return Session(str(data["user_id"]), str(data["access_token"]), str(data["device_id"]))

    async def login(self, user: str, password: str, device_id: str | None = None) -> Session:
        """Sign in with a password (`m.login.password`)."""
        body: dict[str, Any] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
        }
        if device_id is not None:
            body["device_id"] = device_id
        async with self._http.post(f"{self._base}/_matrix/client/v3/login", json=body) as response:
            data = await _json(response)
        return Session(str(data["user_id"]), str(data["access_token"]), str(data["device_id"]))

    async def whoami(self, access_token: str) -> str:
        """The user id an access token belongs to (raises if the token is not valid)."""
        async with self._http.get(
            f"{self._base}/_matrix/client/v3/account/whoami",
            headers={"Authorization": f"Bearer {access_token}"},
        ) as response:
            return str((await _json(response))["user_id"])
