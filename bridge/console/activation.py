"""The practitioner's activation page: a one-time link where they choose their password.

Public (the link's secret is the credential), so it sits outside the console. The secret travels
in the query string (which the bridge's access log leaves out) and then in the form body; the
page is never cached and sends no Referer. After activation the link is spent.
"""

from __future__ import annotations

from aiohttp import web

from bridge.admin.handlers import MIN_PASSWORD, activate, activation_account
from bridge.admin.model import AdminError, MatrixId
from bridge.console.keys import ADMIN_SERVICES
from bridge.console.render import STATUS, page
from bridge.http.auth import public

PATH = "/activate"


@public
async def activation_form(request: web.Request) -> web.Response:
    secret = request.query.get("token", "")
    try:
        matrix_id = await activation_account(request.config_dict[ADMIN_SERVICES], secret)
    except AdminError as exc:
        return page(
            request,
            "activate.html",
            status=STATUS[exc.kind],
            user=None,
            error=exc.message,
            matrix_id=None,
            token="",
            min_length=MIN_PASSWORD,
        )
    return page(
        request,
        "activate.html",
        user=None,
        error=None,
        matrix_id=matrix_id,
        token=secret,
        min_length=MIN_PASSWORD,
    )


@public
async def activation_submit(request: web.Request) -> web.Response:
    form = await request.post()
    secret = str(form.get("token", ""))
    password = str(form.get("password", ""))
    services = request.config_dict[ADMIN_SERVICES]
    try:
        if password != str(form.get("confirm", "")):
            raise AdminError("invalid", "The two passwords differ.")
        activated = await activate(services, secret, password)
    except AdminError as exc:
        try:
            still_valid: MatrixId | None = await activation_account(services, secret)
        except AdminError:
            still_valid = None
        return page(
            request,
            "activate.html",
            status=STATUS[exc.kind],
            user=None,
            error=exc.message,
            matrix_id=still_valid,
            token=secret if still_valid else "",
            min_length=MIN_PASSWORD,
        )
    homeserver = services.client_for(activated).base_url
    return page(request, "activated.html", user=None, matrix_id=activated, homeserver=homeserver)


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, activation_form, name="activation_form")
    app.router.add_post(PATH, activation_submit, name="activation_submit")
