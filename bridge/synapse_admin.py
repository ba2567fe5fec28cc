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
from urllib.parse import quote

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

    def __init__(
        self, http: aiohttp.ClientSession, base_url: str, admin_token: str | None = None
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._admin_token = admin_token
        """Server-admin access token for the `/_synapse/admin` calls below (onboarding)."""

    @property
    def base_url(self) -> str:
        return self._base

    def _admin_headers(self) -> dict[str, str]:
        if self._admin_token is None:
            raise SynapseAdminError(401, "M_MISSING_TOKEN", "no admin token for this homeserver")
        return {"Authorization": f"Bearer {self._admin_token}"}

    def _user_url(self, version: str, user_id: str, suffix: str = "") -> str:
        return f"{self._base}/_synapse/admin/{version}/users/{quote(user_id, safe='')}{suffix}"

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

    async def logout(self, access_token: str) -> None:
        """End the session of `access_token` (its device is deleted)."""
        async with self._http.post(
            f"{self._base}/_matrix/client/v3/logout",
            headers={"Authorization": f"Bearer {access_token}"},
            json={},
        ) as response:
            await _json(response)

    # --- Admin API (needs the admin token given at construction) ---------------------------

    async def get_user(self, user_id: str) -> dict[str, Any] | None:
        """`GET /_synapse/admin/v2/users/{id}`: the account's details, None if it does not exist
        (a deactivated account still exists: its ID can never be given to anyone else)."""
        async with self._http.get(
            self._user_url("v2", user_id), headers=self._admin_headers()
        ) as response:
            if response.status == 404:
                return None
            return await _json(response)

    async def put_user(self, user_id: str, body: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """`PUT /_synapse/admin/v2/users/{id}`: create (True) or modify (False) an account."""
        async with self._http.put(
            self._user_url("v2", user_id), headers=self._admin_headers(), json=body
        ) as response:
            data = await _json(response)
            return response.status == 201, data

    async def exempt_from_rate_limits(self, user_id: str) -> None:
        """`POST /_synapse/admin/v1/users/{id}/override_ratelimit` with 0/0: Synapse then
        applies none of the limits it keys on a signed-in account (messages, redactions,
        joins, invites, room creation) to `user_id`. Sign-in (`rc_login`) and federation
        limits still apply. For a service account such as the bot, which answers many people
        at once; the account need not be a server admin."""
        async with self._http.post(
            self._user_url("v1", user_id, "/override_ratelimit"),
            headers=self._admin_headers(),
            json={"messages_per_second": 0, "burst_count": 0},
        ) as response:
            await _json(response)

    async def rate_limit_override(self, user_id: str) -> dict[str, Any]:
        """The account's override (`{}` when it has none)."""
        async with self._http.get(
            self._user_url("v1", user_id, "/override_ratelimit"), headers=self._admin_headers()
        ) as response:
            return await _json(response)

    async def create_user(self, user_id: str, *, displayname: str) -> bool:
        """Create an account without a password (nobody can sign in until one is set).

        Returns False when the ID was taken meanwhile and the call only changed its display
        name: callers check `get_user` first, so this means a concurrent creation.
        """
        created, _ = await self.put_user(user_id, {"displayname": displayname})
        if created:
            logger.info("created account %s", user_id)
        return created

    async def set_password(self, user_id: str, password: str, *, logout_devices: bool) -> None:
        await self.put_user(user_id, {"password": password, "logout_devices": logout_devices})

    async def set_locked(self, user_id: str, locked: bool) -> None:
        """Lock (or unlock) an account: a locked user's requests get 401 `M_USER_LOCKED`."""
        await self.put_user(user_id, {"locked": locked})

    async def deactivate(self, user_id: str, *, erase: bool) -> None:
        """`POST /_synapse/admin/v1/deactivate/{id}`: log out, leave every room, reject pending
        invitations (the homeserver does the leaving in the background); `erase` also hides
        the account's profile and past messages from new members."""
        url = f"{self._base}/_synapse/admin/v1/deactivate/{quote(user_id, safe='')}"
        async with self._http.post(
            url, headers=self._admin_headers(), json={"erase": erase}
        ) as response:
            await _json(response)
        logger.info("deactivated account %s", user_id)

    async def joined_rooms(self, user_id: str) -> list[str]:
        async with self._http.get(
            self._user_url("v1", user_id, "/joined_rooms"), headers=self._admin_headers()
        ) as response:
            data = await _json(response)
        rooms = data.get("joined_rooms", [])
        return [str(r) for r in rooms] if isinstance(rooms, list) else []
