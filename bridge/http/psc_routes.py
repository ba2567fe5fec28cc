"""`POST /_caducee/v1/psc/admit`: the homeserver asks whether a PSC identity may sign in.

Only the service token named in `psc.synapse_token` may call it (403 for everyone else,
including the bot and users with OpenID tokens); without a `psc:` section the route answers
404 as if it did not exist. Refusals are answers (200, `decision: refuse`), not errors, so the
module can show their message; errors are for bad requests and an unreachable homeserver.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from bridge.admin.model import AdminError
from bridge.admin.psc_signin import AdmitRequest, admit
from bridge.common.api import API_PREFIX
from bridge.console.keys import ADMIN_SERVICES
from bridge.http.auth import REQUESTER
from bridge.http.errors import (
    M_FORBIDDEN,
    M_INVALID_PARAM,
    M_NOT_FOUND,
    M_UNAVAILABLE,
    ApiError,
)
from bridge.http.keys import CONFIG

ADMIT_PATH: Final = f"{API_PREFIX}/psc/admit"
MAX_BODY: Final = 4096


async def admit_route(request: web.Request) -> web.Response:
    settings = request.app[CONFIG].psc
    if settings is None:
        raise ApiError(404, M_NOT_FOUND, "Pro Santé Connect sign-in is not configured")
    requester = request[REQUESTER]
    if requester.kind != "service" or requester.name != settings.synapse_token:
        raise ApiError(403, M_FORBIDDEN, "only the homeserver may ask for PSC admission")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, M_INVALID_PARAM, "request too large")
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, M_INVALID_PARAM, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(400, M_INVALID_PARAM, "the body must be a JSON object")
    try:
        parsed = AdmitRequest.parse(body)
        answer = await admit(request.app[ADMIN_SERVICES], settings, parsed)
    except AdminError as error:
        status = {"invalid": 400, "not_found": 404, "conflict": 409}.get(error.kind, 503)
        errcode = M_UNAVAILABLE if status == 503 else M_INVALID_PARAM
        raise ApiError(status, errcode, error.message) from None
    return web.json_response(answer)


def add_routes(app: web.Application) -> None:
    app.router.add_post(ADMIT_PATH, admit_route, name="psc_admit")
