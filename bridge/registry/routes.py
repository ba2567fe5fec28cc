"""The registry's HTTP side: the public manifest, the guards' allow-list, the peer refresher.

Both endpoints are public and read-only. The manifest is meant for anyone (peers verify it
with the fingerprint their admin pinned). The allow-list says nothing the manifests do not
already say (our homeservers and our peers' public ones), and the guards of our homeservers
must read it without holding a secret in homeserver.yaml; it cannot change anything.

`REGISTRY` holds the handlers' services for the console (`request.config_dict[REGISTRY]`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web

from bridge.http.auth import public
from bridge.http.keys import CONFIG, DATABASE, HTTP_CLIENT
from bridge.registry import handlers
from bridge.registry.model import ALLOWED_SERVERS_PATH, MANIFEST_PATH
from bridge.registry.peering import background_refresher
from bridge.registry.services import RegistryServices

logger = logging.getLogger(__name__)

REGISTRY: web.AppKey[RegistryServices] = web.AppKey("caducee_registry", RegistryServices)
CACHE_CONTROL: Final = "no-cache"
"""Caches must revalidate: a removed homeserver has to disappear from the list at once."""


@public
async def manifest(request: web.Request) -> web.Response:
    document = await handlers.signed_manifest(request.app[REGISTRY])
    return web.json_response(document, headers={"Cache-Control": CACHE_CONTROL})


@public
async def allowed_servers(request: web.Request) -> web.Response:
    allowed = await handlers.allowed_servers(request.app[REGISTRY])
    return web.json_response(
        {
            "servers": list(allowed.servers),
            "version": allowed.version,
            "expires": allowed.expires,
            "registry_empty": allowed.registry_empty,
        },
        headers={"Cache-Control": CACHE_CONTROL},
    )


async def _registry(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    services = RegistryServices.from_config(config, app[DATABASE], app[HTTP_CLIENT])
    app[REGISTRY] = services
    logger.info(
        "Federation %r, signing key fingerprint %s", services.federation, services.fingerprint
    )
    async for _ in background_refresher(services, app[HTTP_CLIENT], config.peer_refresh_seconds):
        yield


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(_registry)  # after the database and HTTP client contexts
    app.router.add_get(MANIFEST_PATH, manifest, name="federation_manifest")
    app.router.add_get(ALLOWED_SERVERS_PATH, allowed_servers, name="federation_allowed_servers")
