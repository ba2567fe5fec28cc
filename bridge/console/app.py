"""The console sub-application, mounted at /admin: sessions, CSRF, sign-in, then the pages.

Everything under /admin answers 401 (a page with a sign-in link) without a valid session,
except the sign-in form itself. Every POST must carry the CSRF token of its session (403
otherwise). The bridge's bearer-token middleware stands aside for this sub-application
(`BEARER_EXEMPT`): its users are people with a browser, not API clients.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Final

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from bridge.admin import audit
from bridge.console import device, pages, registry_pages, resets_page, sessions
from bridge.console.keys import ADMIN_SERVICES, ADMIN_USER, LIMITER, SESSION_SECRET
from bridge.console.ratelimit import Outcome
from bridge.console.render import page
from bridge.console.signin import Verdict, check_password, is_admin, normalise
from bridge.db import DatabaseError
from bridge.http.auth import BEARER_EXEMPT
from bridge.http.errors import Handler
from bridge.http.keys import CONFIG, HTTP_CLIENT
from bridge.registry.routes import REGISTRY

logger = logging.getLogger(__name__)

PREFIX: Final = "/admin"
AUDIT_UNAVAILABLE: Final = (
    "Nothing was done: the console cannot write to its audit log right now, and it does "
    "nothing it cannot record. Try again in a few minutes; if this persists, tell the "
    "bridge's operator (the service log says why)."
)
_OPEN: set[Handler] = set()
MAX_FORM_BYTES = 2 * 1024 * 1024  # bulk files
SETTLED: Final[dict[Verdict, Outcome]] = {
    "ok": "ok",
    "refused": "refused",
    "throttled": "no_verdict",  # the homeserver did not judge the password
    "unavailable": "no_verdict",
}


def open_to_all(handler: Handler) -> Handler:
    """Reachable without a session: the sign-in form only."""
    _OPEN.add(handler)
    return handler


def secure_cookies(request: web.Request) -> bool:
    public = request.config_dict[ADMIN_SERVICES].public_url
    return request.secure or public.startswith("https://")


def set_cookie(
    request: web.Request,
    response: web.StreamResponse,
    name: str,
    value: str,
    max_age: int | None = None,
) -> None:
    response.set_cookie(
        name,
        value,
        path=sessions.COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=secure_cookies(request),
        max_age=max_age,
    )


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def sign_in_required(request: web.Request) -> web.Response:
    return page(request, "signin_required.html", status=401, user=None)


@web.middleware
async def console_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Session and CSRF checks, and HTML (not JSON) for errors inside the console."""
    try:
        if request.match_info.http_exception is not None:
            raise request.match_info.http_exception
        if request.match_info.handler not in _OPEN:
            secret = request.cookies.get(sessions.COOKIE, "")
            services = request.config_dict[ADMIN_SERVICES]
            found = None
            if secret:
                async with services.db.sessions() as s:
                    found = await sessions.find_session(s, secret, now=services.now())
            config = request.config_dict[CONFIG]
            if found is None or not is_admin(config, found.user_id):
                return sign_in_required(request)
            request[ADMIN_USER] = found.user_id
            request[SESSION_SECRET] = secret
            if request.method == "POST":
                form = await request.post()
                token = form.get("csrf")
                if not isinstance(token, str) or not sessions.csrf_ok(secret, token):
                    return page(
                        request,
                        "error.html",
                        status=403,
                        user=found.user_id,
                        message="This form has expired. Go back, reload and retry.",
                        csrf=sessions.csrf_token(secret),
                    )
        return await handler(request)
    except (SQLAlchemyError, DatabaseError, OSError) as exc:
        # Nothing happens in the console without its audit record (same transaction): when
        # the database cannot be written, the action is refused, said so, and logged.
        logger.error(
            "Console: %s %s refused: the database (and its audit log) cannot be written (%s)",
            request.method,
            request.path,
            type(exc).__name__,
        )
        session_secret = request.get(SESSION_SECRET)
        return page(
            request,
            "error.html",
            status=503,
            user=request.get(ADMIN_USER),
            message=AUDIT_UNAVAILABLE,
            csrf=sessions.csrf_token(session_secret) if session_secret else "",
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        session_secret = request.get(SESSION_SECRET)
        return page(
            request,
            "error.html",
            status=exc.status,
            user=request.get(ADMIN_USER),
            message=exc.reason,
            csrf=sessions.csrf_token(session_secret) if session_secret else "",
        )


@open_to_all
async def signin_form(request: web.Request) -> web.StreamResponse:
    return signin_page(request)


def signin_page(
    request: web.Request, *, error: str | None = None, status: int = 200
) -> web.Response:
    login_secret = sessions.new_secret()
    response = page(
        request,
        "signin.html",
        status=status,
        user=None,
        error=error,
        csrf=sessions.csrf_token(login_secret),
    )
    set_cookie(request, response, sessions.LOGIN_COOKIE, login_secret)
    return response


@open_to_all
async def signin(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    login_secret = request.cookies.get(sessions.LOGIN_COOKIE, "")
    token = form.get("csrf")
    if not login_secret or not isinstance(token, str) or not sessions.csrf_ok(login_secret, token):
        return signin_page(request, error="The form expired; please sign in again.", status=403)
    user_id = normalise(str(form.get("user_id", "")))[:255]
    password = str(form.get("password", ""))
    address = request.remote or "unknown"
    limiter = request.config_dict[LIMITER]
    key = device.device_key(request.config_dict[REGISTRY].signing_key.encode())
    known = device.device_of(key, user_id, request.cookies.get(device.DEVICE_COOKIE))
    attempt = limiter.start(address, user_id, known)  # counted before the homeserver is asked
    if attempt is None:
        wait = limiter.wait_needed(address, user_id, known)
        return signin_page(
            request,
            status=429,
            error=f"Too many attempts. Try again in {int(wait // 60) + 1} minute(s).",
        )
    services = request.config_dict[ADMIN_SERVICES]
    config = request.config_dict[CONFIG]
    outcome: Outcome = "refused"  # an attempt cut short stays counted
    try:
        verdict = await check_password(
            config, services, request.config_dict[HTTP_CLIENT], user_id, password
        )
        outcome = SETTLED[verdict]
    finally:
        limiter.finished(attempt, outcome)
    now = services.now()
    if verdict != "ok":
        async with services.db.sessions.begin() as s:
            await audit.record(
                s,
                at=now,
                actor=user_id or "(empty)",
                action="sign_in",
                target=None,
                outcome="refused",
                address=address,
            )
        messages = {
            "refused": "Wrong Matrix ID or password, or not a federation admin.",
            "throttled": "Your homeserver asks to slow down; try again in a minute.",
            "unavailable": "Your homeserver cannot be reached right now; try again later.",
        }
        status = {"refused": 401, "throttled": 429, "unavailable": 503}[verdict]
        return signin_page(request, error=messages[verdict], status=status)
    lifetime = timedelta(hours=config.admin.session_hours)
    async with services.db.sessions.begin() as s:
        secret = await sessions.open_session(s, user_id, now=now, lifetime=lifetime)
        await audit.record(s, at=now, actor=user_id, action="sign_in", target=None, address=address)
    response = see_other(PREFIX + "/")
    set_cookie(request, response, sessions.COOKIE, secret)
    if known is None:
        set_cookie(
            request,
            response,
            device.DEVICE_COOKIE,
            device.issue(key, user_id),
            max_age=device.MAX_AGE_SECONDS,
        )
    response.del_cookie(sessions.LOGIN_COOKIE, path=sessions.COOKIE_PATH)
    return response


async def signout(request: web.Request) -> web.StreamResponse:
    services = request.config_dict[ADMIN_SERVICES]
    async with services.db.sessions.begin() as s:
        await sessions.close_session(s, request[SESSION_SECRET])
        await audit.record(s, at=services.now(), actor=request[ADMIN_USER], action="sign_out")
    response = see_other(PREFIX + "/login")
    response.del_cookie(sessions.COOKIE, path=sessions.COOKIE_PATH)
    return response


def console_app() -> web.Application:
    app = web.Application(middlewares=[console_middleware], client_max_size=MAX_FORM_BYTES)
    app[BEARER_EXEMPT] = True
    app.router.add_get("/login", signin_form, name="signin_form")
    app.router.add_post("/login", signin, name="signin")
    app.router.add_post("/logout", signout, name="signout")
    pages.add_routes(app)
    registry_pages.add_routes(app)
    resets_page.add_routes(app)
    return app
