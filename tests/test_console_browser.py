"""The console in a real browser: headless Chromium (the system's, not a downloaded one)
driven by Playwright signs in, onboards a practitioner and finds the audit entry.

The bridge runs on a loopback port with the real application; the admin signs in with their
account on hs_a, a real homeserver, which also receives the new practitioner's account.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web

from bridge.config import BridgeConfig
from bridge.http.app import create_app
from bridge.http.keys import DATABASE
from deploy.local.federation import Homeserver
from tests.admin_support import import_register, random_rpps
from tests.conftest import free_port
from tests.console_support import ADMIN_PASSWORD, console_config, new_admin

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("CADUCEE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest_asyncio.fixture
async def live_bridge(
    tmp_path: Path, hs_a: Homeserver
) -> AsyncIterator[tuple[str, web.Application, BridgeConfig, str]]:
    admin = await new_admin(hs_a)
    config = console_config(tmp_path, hs_a, [admin.user_id])
    app = create_app(config, create_database=True)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", app, config, admin.user_id
    finally:
        await runner.cleanup()


async def test_admin_signs_in_onboards_and_sees_the_audit_entry(
    live_bridge: tuple[str, web.Application, BridgeConfig, str], hs_a: Homeserver, tmp_path: Path
) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium` (make test does it)")
    from playwright.async_api import async_playwright, expect

    base, app, _, admin_id = live_bridge
    rpps, other = random_rpps(), random_rpps()
    last = "NAVIGATEUR" + rpps[-5:]
    await import_register(
        app[DATABASE], tmp_path, [(rpps, last, "ÉLODIE"), (other, "AUTRE" + other[-5:], "PAUL")]
    )

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page()
            page.set_default_timeout(15_000)
            await page.goto(base + "/admin/")
            await expect(page.get_by_text("Sign in required")).to_be_visible()
            await page.goto(base + "/admin/login")
            await page.get_by_label("Matrix ID").fill(admin_id)
            await page.get_by_label("Password").fill(ADMIN_PASSWORD)
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.locator("header .who")).to_contain_text(admin_id)

            await page.get_by_role("link", name="Practitioners").click()
            await page.get_by_placeholder("name, specialty, city").fill(f"élodie {last.lower()}")
            await page.get_by_role("button", name="Search the directory").click()
            found = page.locator("#search-results tbody tr")
            await expect(found).to_have_count(1)
            await expect(found).to_contain_text(rpps)
            await found.get_by_role("button", name="Onboard").click()
            await expect(page.get_by_role("heading", name="Onboarded")).to_be_visible()
            matrix_id = (await page.locator("#matrix-id").inner_text()).strip()
            assert matrix_id == f"@elodie.{last.lower()}:{hs_a.server_name}"
            link = (await page.locator("#activation-link").inner_text()).strip()
            assert "/activate?token=" in link

            await page.get_by_role("link", name="Audit log").click()
            row = page.locator("#audit tbody tr").filter(has_text=matrix_id)
            await expect(row).to_have_count(1)
            await expect(row).to_contain_text("onboard")
            await expect(row).to_contain_text(admin_id)
            await expect(row).to_contain_text(rpps)
            assert link.rpartition("=")[2] not in await page.content()

            await page.get_by_role("link", name="Practitioners").click()
            await page.get_by_placeholder("name, specialty, city").fill(last)
            await page.get_by_role("button", name="Search the directory").click()
            await expect(page.locator("#search-results tbody tr")).to_contain_text(matrix_id)
        finally:
            await browser.close()
