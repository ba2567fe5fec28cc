"""The console's page of doctors held by the bot after an identity reset.

The list is what the bot last reported (`bridge.identity_resets`); the console cannot change
it. Accepting a reset stays on the bot's host (`caducee bot accept-identity`), after the admin
has checked with the doctor by another channel: the page says how, for each doctor. A button
here would let whoever holds an admin's console session hand a doctor's authority over the bot
to a new key, which is exactly what the pin exists to prevent.
"""

from __future__ import annotations

from aiohttp import web

from bridge.console.keys import ADMIN_SERVICES
from bridge.console.render import admin_page
from bridge.identity_resets.store import BotReport, latest_reports


async def pending_count(request: web.Request) -> int:
    """How many doctors the bots hold right now (for the overview)."""
    return sum(len(r.pending) for r in await _reports(request))


async def _reports(request: web.Request) -> list[BotReport]:
    async with request.config_dict[ADMIN_SERVICES].db.sessions() as s:
        return await latest_reports(s)


def grouped(key: str) -> str:
    """A public key in groups of four characters, as Element shows keys to compare by voice."""
    return " ".join(key[i : i + 4] for i in range(0, len(key), 4))


async def identity_resets(request: web.Request) -> web.Response:
    return admin_page(
        request, "identity_resets.html", reports=await _reports(request), grouped=grouped
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/identity-resets", identity_resets, name="identity_resets")
