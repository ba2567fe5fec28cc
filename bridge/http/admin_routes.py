"""The admin capability's routes: the console under /admin, the practitioners' activation page.

The handlers' services (database, homeservers' admin APIs) are built when the application
starts, from what the bridge already opened (its database and outgoing HTTP session).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from bridge.admin.services import AdminServices
from bridge.console import activation
from bridge.console.app import PREFIX, console_app
from bridge.console.keys import ADMIN_SERVICES, LIMITER, TEMPLATES
from bridge.console.ratelimit import SignInLimiter
from bridge.console.render import environment
from bridge.http.auth import public
from bridge.http.keys import CONFIG, DATABASE, HTTP_CLIENT


async def _admin_services(app: web.Application) -> AsyncIterator[None]:
    app[ADMIN_SERVICES] = AdminServices.from_config(app[CONFIG], app[DATABASE], app[HTTP_CLIENT])
    yield


@public
async def console_without_slash(request: web.Request) -> web.StreamResponse:
    """`/admin` is where people type the console's address: send them to `/admin/`."""
    raise web.HTTPMovedPermanently(PREFIX + "/")


def add_routes(app: web.Application) -> None:
    app.router.add_get(PREFIX, console_without_slash)
    app[TEMPLATES] = environment()
    app[LIMITER] = SignInLimiter()
    app.cleanup_ctx.append(_admin_services)  # after the database and HTTP client contexts
    activation.add_routes(app)
    app.add_subapp(PREFIX, console_app())
