"""The admin console over HTTP against a real homeserver: every admin route is closed without a
session, sign-in checks the password with the admin's homeserver, forms need their CSRF token,
sign-in attempts are rate-limited, and onboarding from the console gives a working account."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bridge.admin.model import Actor
from bridge.console.app import _OPEN
from bridge.console.ratelimit import SignInLimiter
from bridge.console.sessions import COOKIE, LOGIN_COOKIE
from bridge.http.auth import _PUBLIC_HANDLERS
from bridge.http.keys import DATABASE
from bridge.registry import handlers
from bridge.registry.peering import check_peer
from bridge.registry.routes import REGISTRY
from bridge.synapse_admin import SynapseAdmin
from deploy.local.federation import Homeserver
from tests.admin_support import add_practitioner, random_rpps
from tests.console_support import (
    ADMIN_PASSWORD,
    console_config,
    csrf_of,
    new_admin,
    running_console,
    sign_in,
)
from tests.registry_support import PEER_FP, Clock, Peer, peer_manifest

pytestmark = pytest.mark.slow
SAMPLE_PARTS = {"action": "lock", "change": "member-add"}
"""Values for variable parts of routes, so that each request reaches its handler."""
PUBLIC_ADMIN_PATHS = {"/admin/login", "/admin"}
"""The only console paths reachable without a session (`/admin` only redirects to `/admin/`)."""


def all_routes(app: web.Application) -> list[tuple[str, str, object]]:
    """(method, URL path, handler) of every route of `app` and its sub-applications (their
    resources already carry the sub-application's prefix)."""
    found: list[tuple[str, str, object]] = []
    for resource in app.router.resources():
        info = resource.get_info()
        if "app" in info:
            found += all_routes(info["app"])
            continue
        path = info["path"] if "path" in info else info["formatter"].format(**SAMPLE_PARTS)
        for route in resource:
            found.append((route.method, path, route.handler))
    return found


async def test_every_admin_route_answers_401_or_403_without_a_session(
    tmp_path: Path, hs_a: Homeserver
) -> None:
    config = console_config(tmp_path, hs_a, ["@someone:" + hs_a.server_name])
    async with running_console(config) as client:
        routes = all_routes(client.app)
        assert len(routes) > 10
        checked = 0
        for method, path, handler in routes:
            if handler in _PUBLIC_HANDLERS or handler in _OPEN:
                assert not path.startswith("/admin") or path in PUBLIC_ADMIN_PATHS, path
                assert not path.startswith("/_caducee/v1/admin"), path
                continue
            for cookies in ({}, {COOKIE: "forged-session"}):
                client.session.cookie_jar.clear()
                client.session.cookie_jar.update_cookies(cookies)
                response = await client.request(method, path, allow_redirects=False)
                assert response.status in (401, 403), (method, path, response.status)
                checked += 1
        assert checked >= 2 * 12
        assert ("GET", "/activate", _handler_named(routes, "activation_form")) in routes


async def test_the_console_address_without_its_slash_leads_to_the_console(
    tmp_path: Path, hs_a: Homeserver
) -> None:
    config = console_config(tmp_path, hs_a, ["@someone:" + hs_a.server_name])
    async with running_console(config) as client:
        response = await client.get("/admin", allow_redirects=False)
        assert response.status == 301 and response.headers["Location"] == "/admin/"
        followed = await client.get("/admin")  # the same answer as /admin/ itself
        direct = await client.get("/admin/")
        assert followed.url.path == "/admin/"
        assert (followed.status, await followed.text()) == (direct.status, await direct.text())


def _handler_named(routes: list[tuple[str, str, object]], name: str) -> object:
    return next(h for _, _, h in routes if getattr(h, "__name__", "") == name)


async def admin_devices(hs: Homeserver, user_id: str) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{hs.client_url}/_synapse/admin/v2/users/{user_id}/devices",
            headers={"Authorization": f"Bearer {hs.admin_token}"},
        ) as response,
    ):
        return int((await response.json())["total"])


async def test_sign_in_checks_the_password_with_the_homeserver_and_the_admin_list(
    tmp_path: Path, hs_a: Homeserver
) -> None:
    admin = await new_admin(hs_a)
    outsider = await new_admin(hs_a)  # a real account, not on the admin list
    config = console_config(tmp_path, hs_a, [admin.user_id])
    devices_before = await admin_devices(hs_a, admin.user_id)
    async with running_console(config) as client:
        assert await sign_in(client, admin.user_id, "wrong password") == 401
        assert await sign_in(client, outsider.user_id, ADMIN_PASSWORD) == 401
        assert (await client.get("/admin/")).status == 401

        form = await client.get("/admin/login")
        response = await client.post(
            "/admin/login",
            data={
                "csrf": csrf_of(await form.text()),
                "user_id": admin.user_id,
                "password": ADMIN_PASSWORD,
            },
            allow_redirects=False,
        )
        assert response.status == 303
        cookie = response.cookies[COOKIE]
        assert cookie["httponly"] and cookie["samesite"] == "Strict"
        assert cookie["path"] == "/admin" and not cookie["secure"]
        overview = await client.get("/admin/")
        assert overview.status == 200
        assert admin.user_id in await overview.text()
        assert await admin_devices(hs_a, admin.user_id) == devices_before  # logged out again

        audit_page = await (await client.get("/admin/audit")).text()
        assert audit_page.count("sign_in") == 3 and "refused" in audit_page
        assert ADMIN_PASSWORD not in audit_page

        csrf = csrf_of(await overview.text())
        assert (await client.post("/admin/logout", data={"csrf": "0" * 64})).status == 403
        assert (await client.post("/admin/logout", data={})).status == 403
        response = await client.post("/admin/logout", data={"csrf": csrf}, allow_redirects=False)
        assert response.status == 303
        assert (await client.get("/admin/")).status == 401


async def test_sign_in_form_needs_its_csrf_token(tmp_path: Path, hs_a: Homeserver) -> None:
    admin = await new_admin(hs_a)
    async with running_console(console_config(tmp_path, hs_a, [admin.user_id])) as client:
        response = await client.post(
            "/admin/login",
            data={"user_id": admin.user_id, "password": ADMIN_PASSWORD},
            allow_redirects=False,
        )
        assert response.status == 403


async def test_repeated_failures_block_the_account_then_the_address(
    tmp_path: Path, hs_a: Homeserver
) -> None:
    admin = await new_admin(hs_a)
    async with running_console(console_config(tmp_path, hs_a, [admin.user_id])) as client:
        limits = SignInLimiter()
        for _ in range(limits.per_client.free):
            assert await sign_in(client, admin.user_id, "wrong password") == 401
        # Even the right password waits now: the account is being guessed from here.
        assert await sign_in(client, admin.user_id, ADMIN_PASSWORD) == 429
        for n in range(limits.per_address.limit - limits.per_client.free):
            assert await sign_in(client, f"@guess{n}:{hs_a.server_name}", "x") == 401
        assert await sign_in(client, f"@guess-last:{hs_a.server_name}", "x") == 429


async def test_cookies_are_secure_when_the_console_is_published_over_https(
    tmp_path: Path, hs_a: Homeserver
) -> None:
    config = console_config(
        tmp_path, hs_a, ["@a:" + hs_a.server_name], public_url="https://bridge.example.test"
    )
    async with running_console(config) as client:
        form = await client.get("/admin/login")
        # The test client speaks plain HTTP, so it would not send a Secure cookie back: the
        # flag is checked where the bridge sets it.
        assert form.cookies[LOGIN_COOKIE]["secure"]
        assert form.cookies[LOGIN_COOKIE]["httponly"]
        assert form.cookies[LOGIN_COOKIE]["samesite"] == "Strict"


async def test_console_onboarding_gives_a_link_that_activates_the_account(
    tmp_path: Path, hs_a: Homeserver
) -> None:
    admin = await new_admin(hs_a)
    async with running_console(console_config(tmp_path, hs_a, [admin.user_id])) as client:
        rpps = random_rpps()
        await add_practitioner(client.app[DATABASE], rpps, "CLAIRE", "CONSOLE" + rpps[-4:])
        assert await sign_in(client, admin.user_id, ADMIN_PASSWORD) == 303
        page = await client.get("/admin/practitioners")
        csrf = csrf_of(await page.text())
        assert (
            await client.post("/admin/practitioners/onboard", data={"rpps": rpps})
        ).status == 403
        response = await client.post(
            "/admin/practitioners/onboard", data={"csrf": csrf, "rpps": rpps}
        )
        assert response.status == 200
        html = await response.text()
        link = re.search(r'id="activation-link">([^<]+)<', html)
        matrix_id = re.search(r'id="matrix-id">([^<]+)<', html)
        assert link is not None and matrix_id is not None
        path = link.group(1).split("://", 1)[1].split("/", 1)[1]

        again = await client.post("/admin/practitioners/onboard", data={"csrf": csrf, "rpps": rpps})
        assert again.status == 409 and "already onboarded" in await again.text()

        client.session.cookie_jar.clear()  # the practitioner has no console session
        form = await client.get("/" + path)
        assert form.status == 200 and matrix_id.group(1) in await form.text()
        token = path.rpartition("=")[2]
        mismatch = await client.post(
            "/activate", data={"token": token, "password": "a" * 14, "confirm": "b" * 14}
        )
        assert mismatch.status == 400
        done = await client.post(
            "/activate",
            data={"token": token, "password": "practitioner pass", "confirm": "practitioner pass"},
        )
        assert done.status == 200 and "ready" in await done.text()
        async with aiohttp.ClientSession() as http:
            session = await SynapseAdmin(http, hs_a.client_url).login(
                matrix_id.group(1), "practitioner pass"
            )
            assert session.user_id == matrix_id.group(1)
        assert (await client.get("/" + path)).status == 404


async def test_members_and_peers_pages_change_the_registry(
    tmp_path: Path, hs_a: Homeserver
) -> None:
    admin = await new_admin(hs_a)
    async with running_console(console_config(tmp_path, hs_a, [admin.user_id])) as client:
        assert await sign_in(client, admin.user_id, ADMIN_PASSWORD) == 303
        page = await client.get("/admin/members")
        assert page.status == 200
        csrf = csrf_of(await page.text())
        added = await client.post(
            "/admin/registry/member-add", data={"csrf": csrf, "name": "Clinique du Parc"}
        )
        assert added.status == 200 and "Member Clinique du Parc added." in await added.text()
        server = await client.post(
            "/admin/registry/homeserver-add",
            data={"csrf": csrf, "server_name": "parc.example.test", "member": "Clinique du Parc"},
        )
        html = await server.text()
        assert server.status == 200 and "parc.example.test" in html
        wrong = await client.post(
            "/admin/registry/homeserver-add",
            data={"csrf": csrf, "server_name": "not a server", "member": "Clinique du Parc"},
        )
        assert wrong.status == 400 and "not a Matrix server name" in await wrong.text()
        peers = await client.get("/admin/peers")
        assert peers.status == 200 and "No peer federation." in await peers.text()
        bad_peer = await client.post(
            "/admin/registry/peer-add", data={"csrf": csrf, "url": "ftp://x", "fingerprint": "x"}
        )
        assert bad_peer.status == 400
        plain = await client.post(
            "/admin/registry/peer-add",
            data={"csrf": csrf, "url": "http://bridge.peer.example", "fingerprint": PEER_FP},
        )
        assert plain.status == 400 and "uses plain http" in await plain.text()
        await _expired_peer_shows_why(client)
        audit_page = await (await client.get("/admin/audit")).text()
        assert "parc.example.test" in audit_page
        assert "peer_manifest_expired" in audit_page and "HTTP 503" in audit_page


async def _expired_peer_shows_why(client: TestClient[web.Request, web.Application]) -> None:
    """A peer whose manifest expired: the page says its servers are cut off, and the audit
    log has the refresh's note (time moved with the registry's clock)."""
    services = client.app[REGISTRY]
    clock = Clock(services.now())
    services.now = clock
    peer = Peer(peer_manifest(clock()))
    async with peer.running() as url, aiohttp.ClientSession() as http:
        services.http, app_http = http, services.http
        await handlers.add_peer(services, Actor("@someone:test"), url, PEER_FP)
        services.http = app_http
        page = await (await client.get("/admin/peers")).text()
        assert "valid until" in page and "cut off" not in page
        peer.status = 503
        clock.advance(hours=2)
        await check_peer(services, http, url)
    page = await (await client.get("/admin/peers")).text()
    assert "Manifest expired" in page and "its homeservers are cut off" in page


async def test_no_console_action_without_its_audit_record(
    tmp_path: Path, hs_a: Homeserver, caplog: pytest.LogCaptureFixture
) -> None:
    """When the audit log cannot be written, sign-in (right or wrong password) and sign-out
    are refused with a page that says so, the refusal is in the service log, and nothing is
    done: no session is opened or closed, no bare 500, no traceback."""
    import logging

    import sqlalchemy as sa

    admin = await new_admin(hs_a)
    config = console_config(tmp_path, hs_a, [admin.user_id])
    async with running_console(config) as client:
        assert await sign_in(client, admin.user_id, ADMIN_PASSWORD) == 303
        signed_in = client.session.cookie_jar.filter_cookies(client.make_url("/admin/"))[COOKIE]
        async with client.app[DATABASE].engine.begin() as conn:  # the audit log fails
            await conn.execute(
                sa.text(
                    "CREATE TRIGGER audit_fails BEFORE INSERT ON admin_audit "
                    "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
                )
            )
        with caplog.at_level(logging.INFO):
            home = await client.get("/admin/")
            csrf = csrf_of(await home.text())
            out = await client.post("/admin/logout", data={"csrf": csrf}, allow_redirects=False)
            assert out.status == 503 and "Nothing was done" in await out.text()
            assert (await client.get("/admin/")).status == 200  # still signed in

            client.session.cookie_jar.clear()
            for password in (ADMIN_PASSWORD, "wrong password"):
                form = await client.get("/admin/login")
                response = await client.post(
                    "/admin/login",
                    data={
                        "csrf": csrf_of(await form.text()),
                        "user_id": admin.user_id,
                        "password": password,
                    },
                    allow_redirects=False,
                )
                assert response.status == 503, password
                assert response.content_type == "text/html"
                assert "audit log" in await response.text()
                assert COOKIE not in response.cookies
        async with client.app[DATABASE].sessions() as session:
            open_sessions = await session.scalar(
                sa.text("SELECT count(*) FROM admin_console_session")
            )
        assert open_sessions == 1  # the first one, still open; none added, none closed
        assert signed_in.value
    refusals = [r for r in caplog.records if r.levelname == "ERROR" and "refused" in r.message]
    assert len(refusals) == 3
    assert all(r.exc_info is None for r in caplog.records)
    assert ADMIN_PASSWORD not in caplog.text
