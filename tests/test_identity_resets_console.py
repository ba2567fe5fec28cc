"""The console lists the doctors the bot holds after an identity reset (real Synapse).

A real bot on hs_a reports to a real bridge, which a federation admin reads in a real browser
(the system's Chromium, driven by Playwright). The doctor is a nio client on hs_b whose
identity is reset as the homeserver sees it (new cross-signing keys). The bridge is stopped
while the reset happens: the bot keeps answering and its report arrives once the bridge is
back. The operator accepts the reset on the bot's host; the list empties and the console's
audit log says how the reset ended.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from typer.testing import CliRunner, Result

from bot.cli import bot_app
from bot.crypto.bootstrap import ensure_cross_signed
from bot.matrix.homeserver import NioJson
from bridge.admin import audit
from bridge.config import BridgeConfig
from bridge.console import sessions
from bridge.http.app import create_app
from bridge.http.keys import DATABASE
from bridge.identity_resets.routes import REPORT_PATH
from bridge.identity_resets.store import ENDED_ACTION, PENDING_ACTION, latest_reports
from deploy.local.federation import Homeserver
from tests.bridge_http_support import OTHER_SERVICE_TOKEN, SERVICE_TOKEN
from tests.conftest import free_port
from tests.conftest_bot import bot_config, start_bot
from tests.console_support import (
    ADMIN_PASSWORD,
    console_config,
    csrf_of,
    new_admin,
    running_console,
    sign_in,
)
from tests.matrix_helpers import Doctor, eventually
from tests.test_bot_e2e_lifecycle import config_file
from tests.test_bridge_openid import openid_token
from tests.test_console_browser import CHROMIUM, CHROMIUM_ARGS
from tests.test_identity_resets_report import entry, key, report

pytestmark = pytest.mark.slow


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_no_one_but_the_bot_writes_the_list_not_even_a_signed_in_admin(
    tmp_path: Path, hs_a: Homeserver
) -> None:
    admin = await new_admin(hs_a)
    async with running_console(console_config(tmp_path, hs_a, [admin.user_id])) as client:
        assert await sign_in(client, admin.user_id, admin.password) == 303
        session = client.session.cookie_jar.filter_cookies(client.make_url("/admin/"))
        cookie = {"Cookie": f"{sessions.COOKIE}={session[sessions.COOKIE].value}"}
        body = report(entry("@dr.faux:" + hs_a.server_name, key()))

        assert (await client.put(REPORT_PATH, json=body)).status == 401
        assert (await client.put(REPORT_PATH, json=body, headers=cookie)).status == 401
        unknown = await client.put(REPORT_PATH, json=body, headers=bearer("x" * 48))
        assert unknown.status == 401  # hs_a does not know it as an OpenID token either
        doctor = await openid_token(hs_a)  # a real user of our own homeserver
        assert (await client.put(REPORT_PATH, json=body, headers=bearer(doctor))).status == 403
        other = await client.put(REPORT_PATH, json=body, headers=bearer(OTHER_SERVICE_TOKEN))
        assert other.status == 403
        # The console has no form that writes the list.
        page = await client.get("/admin/identity-resets")
        assert page.status == 200
        posted = await client.post(
            "/admin/identity-resets", data={"csrf": csrf_of(await page.text())}
        )
        assert posted.status == 405
        async with client.app[DATABASE].sessions() as s:
            assert await latest_reports(s) == []
            assert [e.action for e in await audit.recent(s)] == ["sign_in"]

        assert (
            await client.put(REPORT_PATH, json=body, headers=bearer(SERVICE_TOKEN))
        ).status == 200
        listed = await (await client.get("/admin/identity-resets")).text()
        assert "@dr.faux:" in listed and "caducee bot accept-identity" in listed


@asynccontextmanager
async def bridge_on(config: BridgeConfig, port: int) -> AsyncIterator[web.Application]:
    runner = web.AppRunner(create_app(config, create_database=True))
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield runner.app
    finally:
        await runner.cleanup()


async def pending_on_bridge(app: web.Application) -> list[str] | None:
    """The users in the bot's last report; None before its first."""
    async with app[DATABASE].sessions() as s:
        found = await latest_reports(s)
    return [p.user_id for p in found[0].pending] if found else None


async def _cli(*args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, bot_app, list(args))


async def test_an_admin_sees_a_held_doctor_in_the_console_until_the_reset_is_accepted(
    tmp_path: Path, hs_a: Homeserver, hs_b: Homeserver
) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium` (make test does it)")
    from playwright.async_api import async_playwright, expect

    admin = await new_admin(hs_a)
    (tmp_path / "bridge").mkdir()
    config = console_config(tmp_path / "bridge", hs_a, [admin.user_id])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = await bot_config(
        hs_a,
        tmp_path / "bot",
        [hs_a.server_name, hs_b.server_name],
        bridge_url=base,
        bridge_token=SERVICE_TOKEN,
    )
    doctor = await Doctor.create(hs_b, tmp_path, name="held")
    bot = None
    try:
        async with bridge_on(config, port) as app:
            bot = await start_bot(settings)
            cli_config = config_file(settings)  # what the operator runs `caducee bot` with
            data = yaml.safe_load(cli_config.read_text())
            cli_config.write_text(yaml.safe_dump({**data, "bridge_token": SERVICE_TOKEN}))
            assert await eventually(lambda: pending_on_bridge(app)) == []  # reported at start
            room_id = await doctor.dm(bot.user_id)
            await doctor.send(room_id, "!help")
            await doctor.wait_for_text(bot.user_id, lambda b: "!find" in b)

        # The bridge is down: the reset happens, and the bot still answers the doctor.
        await ensure_cross_signed(
            NioJson(doctor.client),
            doctor.user_id,
            str(doctor.client.device_id),
            doctor.store_dir / "cs-after-reset.json",
            doctor.password,
        )
        gate = bot.identity_gate
        assert gate is not None

        async def held() -> str | None:
            return gate.pins.changed().get(doctor.user_id)

        new_key = await eventually(held, timeout=30)
        mark = len(doctor.seen)
        await doctor.send(room_id, "!help")
        explained = await doctor.wait_for_text(bot.user_id, after=mark)
        assert "identity has changed" in explained.body

        async with bridge_on(config, port) as app:

            async def listed() -> list[str] | None:
                return await pending_on_bridge(app) or None  # the earlier, empty list: wait

            assert await eventually(listed, timeout=40) == [doctor.user_id]
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
                )
                try:
                    page = await browser.new_page()
                    page.set_default_timeout(15_000)
                    await page.goto(base + "/admin/login")
                    await page.get_by_label("Matrix ID").fill(admin.user_id)
                    await page.get_by_label("Password").fill(ADMIN_PASSWORD)
                    await page.get_by_role("button", name="Sign in").click()
                    await expect(page.locator("#held")).to_contain_text("1 doctor(s)")
                    await page.get_by_role("link", name="Identity resets").first.click()
                    await expect(
                        page.get_by_role("heading", name="Pending identity resets")
                    ).to_be_visible()
                    row = page.locator(".identity-resets tbody tr").filter(has_text=doctor.user_id)
                    await expect(row).to_have_count(1)
                    await expect(row).to_contain_text(new_key[:4] + " " + new_key[4:8])
                    await expect(row.locator("code.accept")).to_have_text(
                        f"caducee bot accept-identity --config bot.yaml {doctor.user_id}"
                    )

                    accepted = await _cli(
                        "accept-identity", "--config", str(cli_config), doctor.user_id
                    )
                    assert accepted.exit_code == 0, accepted.output

                    async def emptied() -> bool | None:
                        return True if await pending_on_bridge(app) == [] else None

                    await eventually(emptied, timeout=30)
                    await page.reload()
                    await expect(page.locator(".identity-resets tbody")).to_contain_text(
                        "No pending identity reset."
                    )
                    await page.get_by_role("link", name="Audit log").click()
                    rows = page.locator("#audit tbody tr").filter(has_text=doctor.user_id)
                    await expect(rows.filter(has_text=PENDING_ACTION)).to_contain_text(new_key)
                    await expect(rows.filter(has_text=ENDED_ACTION)).to_contain_text(
                        "how=accepted-by-operator"
                    )
                    await expect(rows.filter(has_text=ENDED_ACTION)).to_contain_text(bot.user_id)
                    assert SERVICE_TOKEN not in await page.content()
                finally:
                    await browser.close()
    finally:
        if bot is not None:
            await bot.stop()
        await doctor.close()
