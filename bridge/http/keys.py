"""Typed keys for what the bridge application shares between its handlers.

Kept in one small module so that route modules, the auth layer and later capabilities (registry,
manifest, console) import the keys without importing each other. A key whose value is defined by
one layer lives beside its type instead (`bridge.http.auth`: SERVER_POLICY, OPENID_VERIFIER,
REQUESTER; `bridge.http.metrics`: METRICS), so this module imports no layer of the bridge's API.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from bridge.config import BridgeConfig
from bridge.db import Database

CONFIG: web.AppKey[BridgeConfig] = web.AppKey("caducee_config", BridgeConfig)
DATABASE: web.AppKey[Database] = web.AppKey("caducee_database", Database)
"""Engine and session factory, opened (and migrated) when the application starts."""
HTTP_CLIENT: web.AppKey[aiohttp.ClientSession] = web.AppKey(
    "caducee_http_client", aiohttp.ClientSession
)
"""Outgoing HTTP (homeservers, peer bridges): one pooled session for the app's lifetime."""
