"""Typed keys for what the bridge application shares between its handlers.

Kept in one small module so that route modules, the auth layer and later capabilities (registry,
manifest, console) import the keys without importing each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from bridge.config import BridgeConfig
from bridge.db import Database

if TYPE_CHECKING:
    from bridge.http.auth import OpenIdVerifier, Requester, ServerPolicy
    from bridge.http.metrics import BridgeMetrics

CONFIG: web.AppKey[BridgeConfig] = web.AppKey("caducee_config", BridgeConfig)
DATABASE: web.AppKey[Database] = web.AppKey("caducee_database", Database)
"""Engine and session factory, opened (and migrated) when the application starts."""
HTTP_CLIENT: web.AppKey[aiohttp.ClientSession] = web.AppKey(
    "caducee_http_client", aiohttp.ClientSession
)
"""Outgoing HTTP (homeservers, peer bridges): one pooled session for the app's lifetime."""
SERVER_POLICY: web.AppKey[ServerPolicy] = web.AppKey("caducee_server_policy")
"""Which servers' users may call the API: the configured ones and the registry's own homeservers."""
OPENID_VERIFIER: web.AppKey[OpenIdVerifier] = web.AppKey("caducee_openid_verifier")
METRICS: web.AppKey[BridgeMetrics] = web.AppKey("caducee_metrics")

REQUESTER: web.RequestKey[Requester] = web.RequestKey("caducee_requester")
"""Who is calling, set by the auth middleware on every authenticated request."""
