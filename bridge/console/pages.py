"""The console's pages and actions. Each action calls the same handler as `caducee admin`.

Actions answer with a page saying what happened (the activation link of a new account is shown
there once, for the admin to pass on); failures are shown on the page, with a status that
matches (400, 404, 409, 503).
"""

from __future__ import annotations

import logging
from collections import Counter

from aiohttp import web

from bridge.admin import accounts, audit, directory
from bridge.admin.bulk_handler import onboard_file
from bridge.admin.departed import list_departed, lock_departed
from bridge.admin.handlers import offboard, onboard, set_locked
from bridge.admin.model import Actor, AdminError
from bridge.console import resets_page
from bridge.console.keys import ADMIN_SERVICES, ADMIN_USER
from bridge.console.render import STATUS, admin_page
from bridge.directory.search import SearchResult, search_directory

logger = logging.getLogger(__name__)

AUDIT_PAGE = 50
SEARCH_LIMIT = 20


def _failure(request: web.Request, error: AdminError) -> web.Response:
    return admin_page(
        request, "result.html", status=STATUS[error.kind], title="Not done", error=error.message
    )


def _actor(request: web.Request) -> Actor:
    return Actor(request[ADMIN_USER])


async def overview(request: web.Request) -> web.Response:
    services = request.config_dict[ADMIN_SERVICES]
    async with services.db.sessions() as s:
        states = Counter(a.state for a in await accounts.list_accounts(s, limit=100_000))
        latest = await audit.recent(s, limit=8)
    departed = [
        d for d in await list_departed(services) if d.state not in ("locked", "deactivated")
    ]
    return admin_page(
        request,
        "overview.html",
        states=states,
        latest=latest,
        departed=departed,
        homeservers=sorted(services.homeservers),
        held=await resets_page.pending_count(request),
    )


async def _search(request: web.Request, query: str) -> tuple[list[SearchResult], dict[str, str]]:
    """A page of the directory, and the accounts of those already onboarded (visible or not:
    the admin sees every link, the directory's users only the visible ones)."""
    async with request.config_dict[ADMIN_SERVICES].db.sessions() as s:
        found = await search_directory(s, query, limit=SEARCH_LIMIT, offset=0)
        linked = {
            str(r.rpps): str(m)
            for r in found.results
            if (m := await directory.link_of_rpps(s, r.rpps)) is not None
        }
    return list(found.results), linked


async def practitioners(request: web.Request) -> web.Response:
    services = request.config_dict[ADMIN_SERVICES]
    query = " ".join(request.query.get("q", "").split())[:200]
    results, linked = await _search(request, query) if query else ([], {})
    async with services.db.sessions() as s:
        opened = await accounts.list_accounts(s)
    return admin_page(
        request,
        "practitioners.html",
        query=query,
        results=results,
        linked=linked,
        accounts=opened,
        departed=await list_departed(services),
        homeservers=sorted(services.homeservers),
        default_server=services.default_server,
    )


async def onboard_action(request: web.Request) -> web.Response:
    form = await request.post()
    services = request.config_dict[ADMIN_SERVICES]
    try:
        done = await onboard(
            services,
            _actor(request),
            str(form.get("rpps", "")),
            server_name=str(form.get("homeserver", "")) or None,
            visible=form.get("visible") == "on",
        )
    except AdminError as exc:
        return _failure(request, exc)
    return admin_page(request, "onboarded.html", done=done)


async def account_action(request: web.Request) -> web.Response:
    form = await request.post()
    services = request.config_dict[ADMIN_SERVICES]
    matrix_id = str(form.get("matrix_id", ""))
    action = request.match_info["action"]
    try:
        if action == "offboard":
            gone = await offboard(services, _actor(request), matrix_id)
            message = f"{gone.matrix_id} is deactivated; it leaves {gone.rooms} room(s)."
        elif action in ("lock", "unlock"):
            await set_locked(services, _actor(request), matrix_id, locked=action == "lock")
            message = f"{matrix_id} is {action}ed."
        else:
            raise web.HTTPNotFound()
    except AdminError as exc:
        return _failure(request, exc)
    return admin_page(request, "result.html", title="Done", message=message, error=None)


async def lock_departed_action(request: web.Request) -> web.Response:
    services = request.config_dict[ADMIN_SERVICES]
    form = await request.post()
    confirmed = form.get("allow_shrink") == "1"
    try:
        departed = await lock_departed(
            services, _actor(request), **({"max_share": None} if confirmed else {})
        )
    except AdminError as exc:
        return _failure(request, exc)
    return admin_page(request, "departed.html", departed=departed)


async def onboard_file_action(request: web.Request) -> web.Response:
    form = await request.post()
    upload = form.get("file")
    if not isinstance(upload, web.FileField):
        return _failure(request, AdminError("invalid", "Choose a CSV file to upload."))
    try:
        text = upload.file.read().decode("utf-8")
    except UnicodeDecodeError:
        return _failure(request, AdminError("invalid", "The file is not UTF-8 text (CSV)."))
    report = await onboard_file(
        request.config_dict[ADMIN_SERVICES],
        _actor(request),
        text,
        dry_run=form.get("dry_run") == "on",
        source=upload.filename[:100],
    )
    status = 400 if report.errors else 200
    return admin_page(request, "bulk.html", status=status, report=report)


async def audit_log(request: web.Request) -> web.Response:
    try:
        offset = max(0, min(int(request.query.get("offset", "0")), 1_000_000))
    except ValueError:
        offset = 0
    async with request.config_dict[ADMIN_SERVICES].db.sessions() as s:
        entries = await audit.recent(s, limit=AUDIT_PAGE + 1, offset=offset)
    return admin_page(
        request,
        "audit.html",
        entries=entries[:AUDIT_PAGE],
        offset=offset,
        more=len(entries) > AUDIT_PAGE,
        page_size=AUDIT_PAGE,
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", overview, name="overview")
    app.router.add_get("/practitioners", practitioners, name="practitioners")
    app.router.add_post("/practitioners/onboard", onboard_action, name="onboard")
    app.router.add_post("/practitioners/onboard-file", onboard_file_action, name="onboard_file")
    app.router.add_post("/accounts/{action:offboard|lock|unlock}", account_action, name="account")
    app.router.add_post("/departed/lock", lock_departed_action, name="lock_departed")
    app.router.add_get("/audit", audit_log, name="audit")
