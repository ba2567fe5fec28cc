"""Console sign-in against a homeserver stand-in that counts the logins it is asked for:
parallel guesses are counted before any answer, and someone else's guesses do not keep the
admin out of their own browser. (Sign-in against real Synapse is in test_console.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridge.console.device import DEVICE_COOKIE
from tests.bridge_http_support import bridge_config, running_bridge
from tests.console_support import csrf_of

ADMIN = "@root:clinic.test"
PASSWORD = "the admin's real passphrase"
Client = TestClient[web.Request, web.Application]


@dataclass
class LoginCounter:
    """A homeserver reduced to /login and /logout; holds logins until `gate` opens."""

    logins: int = 0
    answered: int = 0
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        async def login(request: web.Request) -> web.Response:
            self.logins += 1
            body = await request.json()
            await self.gate.wait()
            self.answered += 1
            if body["identifier"]["user"] == ADMIN and body["password"] == PASSWORD:
                return web.json_response(
                    {"user_id": ADMIN, "access_token": "syt_x", "device_id": "D"}
                )
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)

        async def logout(request: web.Request) -> web.Response:
            return web.json_response({})

        app = web.Application()
        app.router.add_post("/_matrix/client/v3/login", login)
        app.router.add_post("/_matrix/client/v3/logout", logout)
        return app


@asynccontextmanager
async def console(tmp_path: Path, counter: LoginCounter) -> AsyncIterator[Client]:
    server = TestServer(counter.app())
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    config = bridge_config(tmp_path, homeserver_url=url, admin={"users": [ADMIN]})
    try:
        async with running_bridge(config) as client:
            yield client
    finally:
        await server.close()


async def csrf(client: Client) -> str:
    return csrf_of(await (await client.get("/admin/login")).text())


async def attempt(client: Client, token: str, password: str) -> int:
    response = await client.post(
        "/admin/login",
        data={"csrf": token, "user_id": ADMIN, "password": password},
        allow_redirects=False,
    )
    return response.status


async def test_twenty_parallel_guesses_reach_the_homeserver_five_times(tmp_path: Path) -> None:
    counter = LoginCounter()
    async with console(tmp_path, counter) as client:
        token = await csrf(client)
        guesses = [asyncio.create_task(attempt(client, token, f"guess {n}")) for n in range(20)]
        # No homeserver answer comes back until the limiter has decided on all twenty.
        done, pending = await asyncio.wait(guesses, timeout=30, return_when="FIRST_COMPLETED")
        while len(done) < 15 and pending:
            more, pending = await asyncio.wait(pending, timeout=30, return_when="FIRST_COMPLETED")
            assert more, "the guesses all went to the homeserver"
            done |= more
        assert counter.answered == 0
        assert sorted(t.result() for t in done) == [429] * 15
        counter.gate.set()
        statuses = await asyncio.gather(*guesses)
    assert sorted(statuses) == [401] * 5 + [429] * 15
    assert counter.logins == 5


async def test_guesses_by_others_do_not_keep_the_admin_out_of_their_browser(
    tmp_path: Path,
) -> None:
    counter = LoginCounter()
    counter.gate.set()
    async with console(tmp_path, counter) as admin_browser:
        assert await attempt(admin_browser, await csrf(admin_browser), PASSWORD) == 303
        assert admin_browser.session.cookie_jar.filter_cookies(
            admin_browser.make_url("/admin/")
        ).get(DEVICE_COOKIE)
        # Someone else guesses from the same address (a shared proxy) until locked out.
        guesser = TestClient(admin_browser.server)
        try:
            statuses = [await attempt(guesser, await csrf(guesser), f"n{n}") for n in range(12)]
            assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
            reached = counter.logins
            # The guesser is refused without asking the homeserver, even with the password.
            assert await attempt(guesser, await csrf(guesser), PASSWORD) == 429
            assert counter.logins == reached
            # The admin's browser, known from the first sign-in, signs in at once.
            assert await attempt(admin_browser, await csrf(admin_browser), PASSWORD) == 303
            assert counter.logins == reached + 1
        finally:
            await guesser.session.close()
