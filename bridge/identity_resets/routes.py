"""``PUT /_caducee/v1/bot/identity-resets``: the bot reports the doctors it holds.

Only the service token named in `bot_service_token` may call it: no token is 401 (the API's
authentication), any other service token or a Matrix user's OpenID token is 403. A console
session is not a bearer token, so an admin's browser cannot write the list either. The body
is the bot's whole list (see `model`); the answer says what the bridge recorded.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Final

from aiohttp import web

from bridge.common.api import API_PREFIX
from bridge.http.auth import REQUESTER
from bridge.http.errors import M_FORBIDDEN, M_INVALID_PARAM, ApiError
from bridge.http.keys import CONFIG, DATABASE
from bridge.identity_resets.model import MAX_PENDING, ReportError, parse_report
from bridge.identity_resets.store import save_report

logger = logging.getLogger(__name__)

REPORT_PATH: Final = f"{API_PREFIX}/bot/identity-resets"
MAX_BODY: Final = 400 * MAX_PENDING
"""Room for the largest list `model` accepts (an entry is under 300 bytes)."""


async def report_route(request: web.Request) -> web.Response:
    requester = request[REQUESTER]
    allowed = request.app[CONFIG].bot_service_token
    if requester.kind != "service" or allowed is None or requester.name != allowed:
        raise ApiError(403, M_FORBIDDEN, "only the bot may report its pending identity resets")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, M_INVALID_PARAM, "request too large")
    try:
        report = parse_report(await request.json())
    except ValueError as exc:  # JSON errors, and ReportError
        message = str(exc) if isinstance(exc, ReportError) else "the body must be a JSON object"
        raise ApiError(400, M_INVALID_PARAM, message) from None
    now = datetime.now(UTC)
    async with request.app[DATABASE].sessions.begin() as session:
        found = await save_report(session, requester.name, report, now=now)
    if found.appeared or found.ended:
        logger.info(
            "%s reports %d pending identity reset(s): %d new, %d ended",
            report.bot,
            len(report.pending),
            len(found.appeared),
            len(found.ended),
        )
    return web.json_response(
        {"pending": len(report.pending), "new": len(found.appeared), "ended": len(found.ended)}
    )


def add_routes(app: web.Application) -> None:
    app.router.add_put(REPORT_PATH, report_route, name="bot_identity_resets")
