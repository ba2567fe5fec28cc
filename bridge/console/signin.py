"""Checking an admin's password with their own homeserver.

The bridge never stores admin passwords: it asks the admin's homeserver to log in
(`POST /_matrix/client/v3/login`), and at once logs the new device out again. Only IDs on the
configured admin list are tried at all, so the console cannot be used to test passwords of
ordinary accounts; and only homeservers the bridge knows are contacted.
"""

from __future__ import annotations

import logging
from typing import Literal

import aiohttp

from bridge.admin.services import AdminServices
from bridge.config import BridgeConfig
from bridge.synapse_admin import SynapseAdmin, SynapseAdminError

logger = logging.getLogger(__name__)

Verdict = Literal["ok", "refused", "throttled", "unavailable"]


def normalise(user_id: str) -> str:
    """Matrix localparts are lowercase; server names compare case-insensitively too."""
    return user_id.strip().lower()


def is_admin(config: BridgeConfig, user_id: str) -> bool:
    return normalise(user_id) in {normalise(u) for u in config.admin.users}


def homeserver_url(config: BridgeConfig, services: AdminServices, user_id: str) -> str | None:
    server = user_id.partition(":")[2]
    if server == config.server_name:
        return config.homeserver_url
    for managed in config.admin.homeservers:
        if managed.server_name == server:
            return managed.url
    return None


async def check_password(
    config: BridgeConfig,
    services: AdminServices,
    http: aiohttp.ClientSession,
    user_id: str,
    password: str,
) -> Verdict:
    """Whether `password` is `user_id`'s, for a listed admin on a known homeserver."""
    user_id = normalise(user_id)
    url = homeserver_url(config, services, user_id)
    if not is_admin(config, user_id) or url is None or not password:
        return "refused"
    client = SynapseAdmin(http, url)
    try:
        session = await client.login(user_id, password)
    except SynapseAdminError as exc:
        if exc.status == 429:
            return "throttled"
        if exc.status in (400, 401, 403):
            return "refused"
        logger.warning("console sign-in: homeserver answered %s", exc.status)
        return "unavailable"
    except (aiohttp.ClientError, TimeoutError) as exc:
        logger.warning("console sign-in: homeserver unreachable (%s)", type(exc).__name__)
        return "unavailable"
    try:
        await client.logout(session.access_token)
    except (SynapseAdminError, aiohttp.ClientError, TimeoutError) as exc:
        logger.warning("console sign-in: could not log the check's device out (%s)", exc)
    return "ok" if normalise(session.user_id) == user_id else "refused"
