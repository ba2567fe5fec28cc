"""HTML responses: one Jinja environment (autoescaping on), the security headers every page has.

No script runs in these pages (the Content-Security-Policy forbids it), nothing is cached, and
no page can be framed by another site.
"""

from __future__ import annotations

from typing import Any

import jinja2
from aiohttp import web

from bridge.console import sessions
from bridge.console.keys import ADMIN_USER, SESSION_SECRET, TEMPLATES
from bridge.http.keys import CONFIG

STATUS = {"invalid": 400, "not_found": 404, "conflict": 409, "unavailable": 503}
"""The HTTP status of a page reporting an `AdminError` of each kind."""

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("bridge.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def page(request: web.Request, template: str, *, status: int = 200, **context: Any) -> web.Response:
    context.setdefault("csrf", "")
    text = request.config_dict[TEMPLATES].get_template(template).render(**context)
    return web.Response(
        text=text, status=status, content_type="text/html", headers=SECURITY_HEADERS
    )


def admin_page(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    """A page of the signed-in console: every one shows the admin, the federation's name, and
    carries the CSRF token of the admin's session for its forms."""
    config = request.config_dict[CONFIG]
    return page(
        request,
        template,
        status=status,
        user=request[ADMIN_USER],
        csrf=sessions.csrf_token(request[SESSION_SECRET]),
        federation=config.federation_name or config.server_name,
        **context,
    )
