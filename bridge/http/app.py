"""The bridge's aiohttp application: `create_app(config)` and nothing else at import time.

Shared resources (database engine, outgoing HTTP session) live in `cleanup_ctx`, so they are
created when the application starts and closed when it stops - in production and in tests
alike. Each capability contributes its routes through an `add_routes(app)` function listed in
`ROUTE_MODULES`; later ones (federation registry, manifest, admin console) plug in the same way.

Middlewares, outermost first: metrics (sees every final status), errors (everything becomes
`{"errcode", "error"}` JSON), authentication (deny by default under the API prefix).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Collection, Sequence

import aiohttp
from aiohttp import web

from bridge.config import BridgeConfig
from bridge.db import open_database
from bridge.http import admin_routes, directory_routes, meta_routes, psc_routes
from bridge.http.auth import (
    OPENID_VERIFIER,
    REGISTRY_CACHE_SECONDS,
    SERVER_POLICY,
    OpenIdVerifier,
    RegistryServerPolicy,
    ServerPolicy,
    auth_middleware,
)
from bridge.http.errors import error_middleware
from bridge.http.federation import FederationResolver, federation_ssl_context
from bridge.http.keys import CONFIG, DATABASE, HTTP_CLIENT
from bridge.http.metrics import METRICS, BridgeMetrics, metrics_middleware
from bridge.identity_resets import routes as identity_reset_routes
from bridge.registry import handlers as registry_handlers
from bridge.registry import routes as registry_routes

logger = logging.getLogger(__name__)

RouteInstaller = Callable[[web.Application], None]
ROUTE_MODULES: tuple[RouteInstaller, ...] = (
    meta_routes.add_routes,
    directory_routes.add_routes,
    admin_routes.add_routes,
    registry_routes.add_routes,
    psc_routes.add_routes,
    identity_reset_routes.add_routes,
)
USER_AGENT = "Caducee-bridge/0.1"
CREATE_DATABASE: web.AppKey[bool] = web.AppKey("caducee_create_database", bool)


async def _database(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    if config.database_url is None and app[CREATE_DATABASE]:
        # The default SQLite file lives in data_dir; it holds only public register data and
        # links, but the folder may later hold keys: owner-only from the start.
        config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    database = await open_database(  # migrates to the code's schema
        config.effective_database_url, create=app[CREATE_DATABASE]
    )
    app[DATABASE] = database
    try:
        yield
    finally:
        await database.close()


async def _http_client(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    connector = aiohttp.TCPConnector(ssl=federation_ssl_context(config.federation_ca_file))
    async with aiohttp.ClientSession(
        connector=connector, headers={"User-Agent": USER_AGENT}, trust_env=False
    ) as session:
        app[HTTP_CLIENT] = session
        app[OPENID_VERIFIER] = OpenIdVerifier(
            config, app[SERVER_POLICY], session, FederationResolver(session)
        )
        yield


def registry_server_policy(
    app: web.Application, cache_seconds: float = REGISTRY_CACHE_SECONDS
) -> RegistryServerPolicy:
    """The configured `openid_allowed_servers`, plus our own homeservers as the registry lists
    them now (read through the registry's services once the application has started)."""

    async def own_homeservers() -> Collection[str]:
        return await registry_handlers.own_homeservers(app[registry_routes.REGISTRY])

    return RegistryServerPolicy(
        app[CONFIG].allowed_servers, own_homeservers, cache_seconds=cache_seconds
    )


def create_app(
    config: BridgeConfig,
    *,
    server_policy: ServerPolicy | None = None,
    extra_routes: Sequence[RouteInstaller] = (),
    create_database: bool = False,
) -> web.Application:
    """Build the bridge application for `config` (nothing is opened until it starts).

    Args:
        config: the validated configuration.
        server_policy: which servers' users may call the API; defaults to the configuration's
            `openid_allowed_servers` plus the federation's own homeservers in the registry
            (`registry_server_policy`), so onboarding and removal apply without a restart.
        extra_routes: route installers of capabilities not yet in `ROUTE_MODULES`.
        create_database: True only where creating the database is the point (tests); the
            service (`caducee bridge run`) and anything else leave it False, so a missing or
            empty database stops the app (`DatabaseMissingError`) instead of starting a new one.
    """
    app = web.Application(middlewares=[metrics_middleware, error_middleware, auth_middleware])
    app[CONFIG] = config
    app[CREATE_DATABASE] = create_database
    app[SERVER_POLICY] = server_policy or registry_server_policy(app)
    app[METRICS] = BridgeMetrics()
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_http_client)
    for install in (*ROUTE_MODULES, *extra_routes):
        install(app)
    return app
