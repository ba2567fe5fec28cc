"""`caducee local up` as a newcomer runs it: foreground, Ctrl-C stops cleanly, state reused."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.synapse_admin import SynapseAdmin
from deploy.local.homeserver import RegisteredUser
from tests.matrix_helpers import Doctor

pytestmark = pytest.mark.slow

CADUCEE = str(Path(sys.executable).parent / "caducee")


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _demo_port(taken: set[int]) -> int:
    """A federation port P with P+10000 (client) and P+11000 (metrics) free too."""
    rng = random.Random()
    while True:
        port = rng.randrange(20000, 29000)
        wanted = {port, port + 10000, port + 11000}
        if not wanted & taken and all(map(_port_is_free, wanted)):
            taken |= wanted
            return port


def _status(state_dir: Path) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(
        [CADUCEE, "local", "status", "--json", "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode, json.loads(result.stdout)


def _start(state_dir: Path, ports: tuple[int, int]) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    process = subprocess.Popen(
        [CADUCEE, "local", "up", "--state-dir", str(state_dir), "--ports", *map(str, ports)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        code, state = _status(state_dir)
        if code == 0 and all(hs.get("bot_user_id") for hs in state["homeservers"]):
            return process, state
        if process.poll() is not None:
            raise AssertionError(f"launcher exited: {process.stdout.read()}")  # type: ignore[union-attr]
        time.sleep(0.2)  # polling another process's readiness: there is no event to await
    process.kill()
    raise AssertionError("the demo did not come up in 180 s")


def _stop(process: subprocess.Popen[str], state: dict[str, Any]) -> str:
    process.send_signal(signal.SIGINT)  # what Ctrl-C sends
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    for homeserver in state["homeservers"]:
        with pytest.raises(ProcessLookupError):
            os.kill(homeserver["pid"], 0)
    return output


class _DemoHomeserver:
    """Enough of a homeserver for the test clients: its client URL and account creation."""

    def __init__(self, state_dir: Path, state: dict[str, Any], index: int) -> None:
        homeserver = state["homeservers"][index]
        self.client_url = homeserver["client_url"]
        secrets = json.loads((state_dir / f"hs-{homeserver['name']}" / "secrets.json").read_text())
        self._secret = secrets["registration_shared_secret"]

    async def register_user(self, localpart: str, password: str) -> RegisteredUser:
        async with aiohttp.ClientSession() as http:
            session = await SynapseAdmin(http, self.client_url).register(
                self._secret, localpart, password
            )
        return RegisteredUser(session.user_id, session.access_token, session.device_id, password)


async def _login(client_url: str, user_id: str, password: str) -> str:
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user_id},
        "password": password,
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{client_url}/_matrix/client/v3/login", json=body) as response,
    ):
        assert response.status == 200, await response.text()
        return str((await response.json())["access_token"])


async def _joined_rooms(client_url: str, token: str) -> list[str]:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.get(f"{client_url}/_matrix/client/v3/joined_rooms") as response,
    ):
        return list((await response.json())["joined_rooms"])


async def _bot_is_exempt_from_rate_limits(state_dir: Path, homeserver: dict[str, Any]) -> None:
    """The bot answers every doctor: Synapse's per-account limits are lifted for it, without
    making it a server admin."""
    session = state_dir / f"hs-{homeserver['name']}" / "admin-session.json"
    token = json.loads(session.read_text())["access_token"]
    async with aiohttp.ClientSession() as http:
        admin = SynapseAdmin(http, homeserver["client_url"], token)
        bot = homeserver["bot_user_id"]
        override = await admin.rate_limit_override(bot)
        assert override == {"messages_per_second": 0, "burst_count": 0}
        account = await admin.get_user(bot)
        assert account is not None and not account["admin"]


async def _console_sign_in(homeserver: dict[str, Any]) -> None:
    """The demo's admin signs in to the console in a real browser, as `make up` tells them."""
    from playwright.async_api import async_playwright, expect

    from tests.test_console_browser import CHROMIUM, CHROMIUM_ARGS

    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium` (make test does it)")
    admin = homeserver["admin"]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page()
            page.set_default_timeout(20_000)
            await page.goto(homeserver["console_url"])
            await expect(page.get_by_text("Sign in required")).to_be_visible()
            await page.goto(homeserver["console_url"] + "login")
            await page.get_by_label("Matrix ID").fill(admin["user_id"])
            await page.get_by_label("Password").fill(admin["password"])
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.locator("header .who")).to_contain_text(admin["user_id"])
            assert page.url == homeserver["console_url"]
        finally:
            await browser.close()


async def test_demo_starts_prints_accounts_stops_on_ctrl_c_and_reuses_state(
    tmp_path: Path,
) -> None:
    taken: set[int] = set()
    ports = (_demo_port(taken), _demo_port(taken))
    process, state = _start(tmp_path, ports)
    try:
        names = [hs["server_name"] for hs in state["homeservers"]]
        assert names == [f"localhost:{ports[0]}", f"localhost:{ports[1]}"]
        doctor = state["homeservers"][0]["demo_accounts"][0]
        client_url = state["homeservers"][0]["client_url"]
        await _bot_is_exempt_from_rate_limits(tmp_path, state["homeservers"][0])
        token = await _login(client_url, doctor["user_id"], doctor["password"])
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
            http.post(f"{client_url}/_matrix/client/v3/createRoom", json={"name": "Staff"}) as made,
        ):
            assert made.status == 200, await made.text()
            room_id = (await made.json())["room_id"]
        # The demo's whole chain: a doctor of federation B asks federation A's bot, over
        # federation (peering + the guards' live allow-lists), to search A's register.
        doctor_b = await Doctor.create(_DemoHomeserver(tmp_path, state, 1), tmp_path, name="doc")
        try:
            bot_a = state["homeservers"][0]["bot_user_id"]
            room = await doctor_b.dm(bot_a, timeout=60)
            await doctor_b.send(room, "!find cardio lyon")
            reply = await doctor_b.wait_for_text(
                bot_a, lambda body: "10009999995" in body, timeout=60
            )
            assert "@dr.martin:" in reply.body  # onboarded and visible: the Matrix ID is shown
        finally:
            await doctor_b.close()
        await _console_sign_in(state["homeservers"][0])
    except BaseException:
        process.send_signal(signal.SIGINT)  # a failed check must not leave the demo running
        process.communicate(timeout=60)
        raise
    await _psc_sign_ins(state)
    output = _stop(process, state)
    assert doctor["password"] in output and client_url in output
    assert state["homeservers"][0]["console_url"] in output  # printed with who signs in
    assert state["homeservers"][0]["admin"]["password"] in output
    assert "custom homeserver" in output
    assert _status(tmp_path)[0] == 1

    process, again = _start(tmp_path, ports)
    try:
        assert again["homeservers"][0]["demo_accounts"][0] == doctor
        token = await _login(client_url, doctor["user_id"], doctor["password"])
        assert room_id in await _joined_rooms(client_url, token)
    finally:
        _stop(process, again)


async def _psc_sign_ins(state: dict[str, Any]) -> None:
    """The demo's stand-in Pro Santé Connect, as `status --json` lists it: on A (every doctor of
    the register) a newcomer gets an account and a demo doctor lands on theirs; B (members
    only) refuses the newcomer."""
    from urllib.parse import urlsplit

    from deploy.local.psc_standin import Identity
    from tests.psc_support import exchange_at, sso_sign_in_at

    a, b = state["homeservers"]
    assert (a["psc"]["admission"], b["psc"]["admission"]) == ("register", "members")
    identities = {i["rpps"]: i for i in a["psc"]["identities"]}
    martin = a["demo_accounts"][0]
    assert martin["rpps"] in identities
    standin = "http://" + urlsplit(a["psc"]["url"]).netloc

    def who(rpps: str) -> Identity:
        first, _, last = identities[rpps]["name"].partition(" ")
        return Identity(rpps, first, last)

    landed = await sso_sign_in_at(a["client_url"], standin, who(martin["rpps"]))
    assert landed.login_token, landed.error_text
    assert (await exchange_at(a["client_url"], landed.login_token))["user_id"] == martin["user_id"]
    newcomer = next(r for r, i in identities.items() if i["name"] == "Bruno MOULIN")
    fresh = await sso_sign_in_at(a["client_url"], standin, who(newcomer))
    assert fresh.login_token, fresh.error_text
    assert (await exchange_at(a["client_url"], fresh.login_token))["user_id"].startswith(
        "@bruno.moulin"
    )
    refused = await sso_sign_in_at(b["client_url"], standin, who(newcomer))
    assert refused.login_token is None and "members only" in refused.error_text
