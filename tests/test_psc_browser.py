"""Pro Santé Connect sign-in in a real browser, then a real conversation: headless Chromium
(the system's) driven by Playwright starts the SSO redirect on a real Synapse, signs in at the
stand-in PSC, comes back with a loginToken; the client exchanges it, and the new session,
with Element's own crypto (matrix-js-sdk), gets a readable `!find` answer from the bot of
that homeserver, which searches the same bridge directory.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
from pathlib import Path

import pytest
from playwright.async_api import Route

from bot.runner import BotRunner
from bridge.psc.endpoints import IDP_ID
from tests.conftest_bot import bot_config, start_bot
from tests.element_driver import ElementClient
from tests.psc_support import BOT_TOKEN, CLIENT_REDIRECT, PEOPLE, PscSite, exchange, in_register
from tests.test_console_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.slow


async def browser_sign_in(site: PscSite, subject_label: str) -> str:
    """The loginToken the browser comes back to the client with."""
    from playwright.async_api import async_playwright

    came_back: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def client_page(route: Route) -> None:
        if not came_back.done():
            came_back.set_result(route.request.url)
        await route.fulfill(status=200, body="signed in")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page()
            page.set_default_timeout(20_000)
            await page.route(CLIENT_REDIRECT.rsplit("/", 1)[0] + "/**", client_page)
            await page.goto(
                f"{site.hs.client_url}/_matrix/client/v3/login/sso/redirect/oidc-{IDP_ID}"
                f"?redirectUrl={CLIENT_REDIRECT}"
            )
            await page.get_by_role("button", name=re.compile(subject_label)).click()
            await page.get_by_role("link", name="Continue").click()
            url = await asyncio.wait_for(came_back, 20)
        finally:
            await browser.close()
    found = re.search(r"[?&]loginToken=([^&]+)", url)
    assert found, url
    return found.group(1)


async def test_a_doctor_signs_in_with_psc_in_a_browser_and_reads_the_bots_answer(
    psc_site: PscSite, tmp_path: Path
) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium` (make test does it)")
    who = PEOPLE["browser"]
    await in_register(psc_site, who)
    hs = psc_site.hs
    bot: BotRunner = await start_bot(
        await bot_config(
            hs,
            tmp_path / "bot",
            [hs.server_name],
            bridge_url=psc_site.bridge_url,
            bridge_token=BOT_TOKEN,
        )
    )
    client = await ElementClient.start()
    try:
        login_token = await browser_sign_in(psc_site, "NAVIGATRICE")
        session = await exchange(psc_site, login_token)
        await client.login(
            hs.client_url,
            session["user_id"],
            # No password exists for this account; the first cross-signing upload needs none.
            "no-password-" + secrets.token_hex(4),
            access_token=session["access_token"],
            device_id=session["device_id"],
        )
        status = await client.cross_sign()
        assert status["device_signed_on_server"], status
        room_id = await client.create_dm(str(bot.user_id))
        await client.send(room_id, f"!find {who.rpps}")
        reply = await client.wait_for_message(
            room_id=room_id, sender=str(bot.user_id), timeout_ms=60_000
        )
        assert reply["decrypted"], reply
        assert "NAVIGATRICE" in reply["body"] and who.rpps in reply["body"], reply["body"]
    finally:
        await client.close()
        await bot.stop()
