"""Pro Santé Connect sign-in against real components: a stand-in PSC (oidc-provider, Node), a
Synapse configured with the `oidc_providers` block Caducée writes, and the bridge deciding
admission, all on loopback and started once per test session (`psc_site`).

`sso_sign_in` walks the OpenID Connect dance over plain HTTP as a browser would (cookies,
redirects, the stand-in's sign-in form), so the many admission cases stay fast; the browser
test drives the same pages with Chromium.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from bridge.config import BridgeConfig, parse_config
from bridge.db import Database
from bridge.http.app import create_app
from bridge.http.keys import DATABASE
from bridge.psc.endpoints import IDP_ID, oidc_provider
from deploy.local.ca import write_private
from deploy.local.federation import Homeserver, HomeserverSpec, LocalFederation
from deploy.local.psc_standin import Identity, PscStandIn, installation_problem
from tests.conftest import free_port

SYNAPSE_TOKEN = "psc-" + secrets.token_hex(24)
BOT_TOKEN = "bot-" + secrets.token_hex(24)
CLIENT_REDIRECT = "http://client.invalid/done"

# Everyone the stand-in can vouch for; each test uses its own, so they share one session.
PEOPLE: dict[str, Identity] = {
    key: Identity("1" + "".join(secrets.choice("0123456789") for _ in range(10)), first, last, code)
    for key, first, last, code in [
        ("newcomer", "Inès", "NOUVELLE", "10"),
        ("browser", "Hélène", "NAVIGATRICE", "10"),
        ("onboarded", "Paul", "EXISTANT", "10"),
        ("struck_off", "Jean", "RADIÉ", "10"),
        ("locked", "Marc", "VERROUILLÉ", "10"),
        ("offboarded", "Luc", "PARTI", "10"),
        ("unknown", "Zoé", "INCONNUE", "10"),
        ("nurse", "Claire", "INFIRMIÈRE", "60"),
        ("weak", "Léa", "FAIBLE", "10"),
        ("forged", "Yves", "FORGÉ", "10"),
        ("returning", "Rémi", "REVENANT", "10"),
        ("homonym", "Odile", "HOMONYME", "10"),
        ("mobile", "Yann", "MOBILE", "10"),
    ]
}
# An ADELI-numbered practitioner (`SubjectNameID` 0 + ADELI): a nurse, profession 60.
PEOPLE["adeli"] = Identity(
    "".join(secrets.choice("0123456789") for _ in range(9)), "Nina", "ADELINE", "60"
)


@dataclass
class PscSite:
    hs: Homeserver
    standin: PscStandIn
    bridge_url: str
    app: web.Application
    config: BridgeConfig

    @property
    def db(self) -> Database:
        return self.app[DATABASE]


@dataclass(frozen=True)
class SsoResult:
    status: int
    url: str
    text: str

    @property
    def login_token(self) -> str | None:
        found = re.search(r"loginToken=([A-Za-z0-9_.\-]+)", self.url + " " + self.text)
        return found.group(1) if found else None

    @property
    def error_text(self) -> str:
        found = re.search(r'<strong id="errormsg">(.*?)</strong>', self.text, re.S)
        return unescape(found.group(1)).strip() if found else ""


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def psc_site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PscSite]:
    problem = installation_problem()
    if problem is not None:
        pytest.fail(f"the stand-in Pro Santé Connect cannot run: {problem}")
    base = tmp_path_factory.mktemp("psc")
    bridge_port = free_port()
    bridge_url = f"http://127.0.0.1:{bridge_port}"
    spec_ports = (free_port(), free_port(), free_port())
    client_url = f"http://127.0.0.1:{spec_ports[1]}"
    standin = PscStandIn(
        base / "standin",
        free_port(),
        [client_url + "/_synapse/client/oidc/callback"],
        list(PEOPLE.values()),
    )
    token_file = base / "secrets" / "psc-bridge.token"
    write_private(token_file, SYNAPSE_TOKEN.encode())
    block = oidc_provider(
        standin.endpoints,
        client_id=standin.client_id,
        client_secret_path=str(standin.client_secret_path),
        bridge_url=bridge_url,
        bridge_token_file=str(token_file),
    )
    spec = HomeserverSpec("p", *spec_ports, testing=True, oidc_providers=(block,))
    federation = LocalFederation(base / "federation", [spec])
    standin.launch()
    try:
        await federation.start()
        hs = federation["p"]
        admin_token = base / "secrets" / "admin.token"
        write_private(admin_token, hs.admin_token.encode())
        config = bridge_site_config(base, hs, bridge_port, token_file, admin_token)
        app = create_app(config, create_database=True)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", bridge_port).start()
        async with aiohttp.ClientSession() as http:
            await standin.wait_ready(http)
        try:
            yield PscSite(hs, standin, bridge_url, app, config)
        finally:
            await runner.cleanup()
    finally:
        federation.stop()
        standin.stop()


def bridge_site_config(
    base: Path, hs: Homeserver, port: int, token_file: Path, admin_token: Path, **psc: Any
) -> BridgeConfig:
    data: dict[str, Any] = {
        "server_name": hs.server_name,
        "homeserver_url": hs.client_url,
        "data_dir": str(base / "bridge"),
        "listen_port": port,
        "service_tokens": [
            {"name": "synapse-psc", "token_file": str(token_file)},
            {"name": "bot", "token": BOT_TOKEN},
        ],
        "admin": {"homeserver_admin_token_file": str(admin_token)},
        "psc": {"admission": "register", **psc},
    }
    return parse_config(data, source="psc test", base_dir=base)


def _jar(site: PscSite) -> aiohttp.CookieJar:
    return _jar_for(site.hs.client_url, f"http://127.0.0.1:{site.standin.port}")


def _jar_for(client_url: str, standin_origin: str) -> aiohttp.CookieJar:
    # Synapse's session cookie is Secure; browsers treat loopback http as a secure origin.
    return aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[client_url, standin_origin])


async def _follow(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> SsoResult:
    """Follow redirects by hand, stopping at the client's own address (never resolved)."""
    for _ in range(15):
        async with http.request(method, url, allow_redirects=False, **kw) as response:
            text = await response.text()
            location = response.headers.get("Location")
            if response.status in (301, 302, 303, 307) and location:
                url = urljoin(url, location)
                method, kw = "GET", {}
                if urlsplit(url).hostname == "client.invalid":
                    return SsoResult(response.status, url, "")
                continue
            return SsoResult(response.status, url, text)
    raise AssertionError(f"too many redirects, last {url}")


async def start_sso(http: aiohttp.ClientSession, site: PscSite | str) -> SsoResult:
    """Start at the homeserver's SSO redirect; end on the stand-in's sign-in page."""
    client_url = site if isinstance(site, str) else site.hs.client_url
    url = (
        f"{client_url}/_matrix/client/v3/login/sso/redirect/oidc-{IDP_ID}"
        f"?redirectUrl={CLIENT_REDIRECT}"
    )
    return await _follow(http, "GET", url)


async def choose(
    http: aiohttp.ClientSession, page: SsoResult, who: Identity, acr: str = "eidas1"
) -> SsoResult:
    """Pick `who` on the stand-in's page, at the given level, and follow back to Synapse."""
    forms = re.findall(
        r'<form method="post" action="([^"]+)">\s*<input[^>]*value="(\d+)"', page.text
    )
    action = next((a for a, subject in forms if subject == who.subject), None)
    assert action is not None, f"{who.subject} not offered on the sign-in page: {page.text[:500]}"
    target = urljoin(page.url, unescape(action))
    return await _follow(http, "POST", target, data={"subject": who.subject, "acr": acr})


async def sso_sign_in(site: PscSite, who: Identity, acr: str = "eidas1") -> SsoResult:
    standin = f"http://127.0.0.1:{site.standin.port}"
    return await sso_sign_in_at(site.hs.client_url, standin, who, acr)


async def sso_sign_in_at(
    client_url: str, standin_origin: str, who: Identity, acr: str = "eidas1"
) -> SsoResult:
    """The whole dance on any homeserver (the demo's too) and stand-in."""
    async with aiohttp.ClientSession(cookie_jar=_jar_for(client_url, standin_origin)) as http:
        page = await start_sso(http, client_url)
        assert page.status == 200, page
        return await choose(http, page, who, acr)


async def exchange_at(client_url: str, login_token: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{client_url}/_matrix/client/v3/login",
            json={"type": "m.login.token", "token": login_token},
        ) as response,
    ):
        body: dict[str, Any] = await response.json()
        assert response.status == 200, body
        return body


async def exchange(site: PscSite, login_token: str) -> dict[str, Any]:
    """`m.login.token`: what the client does with the loginToken it came back with."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{site.hs.client_url}/_matrix/client/v3/login",
            json={"type": "m.login.token", "token": login_token},
        ) as response,
    ):
        body: dict[str, Any] = await response.json()
        assert response.status == 200, body
        return body


async def in_register(site: PscSite, who: Identity) -> None:
    """Put `who` in the live directory, with their profession code (once)."""
    import sqlalchemy as sa

    from tests.admin_support import add_practitioner

    async with site.db.sessions() as session:
        present = await session.scalar(
            sa.text("SELECT count(*) FROM directory_practitioner WHERE rpps = :r"), {"r": who.rpps}
        )
    if not present:
        await add_practitioner(site.db, who.rpps, who.given_name.upper(), who.family_name)
    async with site.db.sessions.begin() as session:
        await session.execute(
            sa.text("UPDATE directory_practitioner SET profession_code = :c WHERE rpps = :r"),
            {"c": who.profession_code, "r": who.rpps},
        )


async def signin_audit(site: PscSite, rpps: str) -> list[Any]:
    from bridge.admin import audit

    async with site.db.sessions() as session:
        entries = await audit.recent(session, limit=500, action="psc_signin")
    return [e for e in entries if e.detail.get("rpps") == rpps]


async def stop_at_callback(http: aiohttp.ClientSession, page: SsoResult, who: Identity) -> str:
    """Sign in at the stand-in but keep the homeserver callback URL instead of following it."""
    form_re = r'<form method="post" action="([^"]+)">\s*<input[^>]*value="(\d+)"'
    action = next(a for a, s in re.findall(form_re, page.text) if s == who.subject)
    url, method, data = urljoin(page.url, unescape(action)), "POST", {"subject": who.subject}
    data["acr"] = "eidas1"
    for _ in range(10):
        async with http.request(method, url, data=data, allow_redirects=False) as response:
            location = response.headers.get("Location")
            assert location, f"no redirect from {url}: {response.status}"
            url, method, data = urljoin(url, location), "GET", {}
            if "/_synapse/client/oidc/callback" in url:
                return url
    raise AssertionError("the stand-in never sent the browser back to the homeserver")


def new_jar(site: PscSite) -> aiohttp.CookieJar:
    return _jar(site)
