"""Console pages for the federation registry: members and their homeservers, peer federations.

The forms call the registry's handlers (bridge.registry.handlers), the same as
`caducee admin member|homeserver|peer ...`; this module only shapes pages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bridge.admin.model import Actor, AdminError
from bridge.console.keys import ADMIN_SERVICES, ADMIN_USER
from bridge.console.render import STATUS, admin_page
from bridge.registry import handlers as registry
from bridge.registry.routes import REGISTRY
from bridge.registry.services import RegistryServices


async def members(request: web.Request, *, status: int = 200, **outcome: Any) -> web.Response:
    services = request.config_dict[REGISTRY]
    return admin_page(
        request,
        "members.html",
        status=status,
        members=await registry.list_members(services),
        fingerprint=services.fingerprint,
        own_server=services.own_server,
        managed=sorted(request.config_dict[ADMIN_SERVICES].homeservers),
        error=outcome.get("error"),
        message=outcome.get("message"),
    )


async def peers(request: web.Request, *, status: int = 200, **outcome: Any) -> web.Response:
    services = request.config_dict[REGISTRY]
    return admin_page(
        request,
        "peers.html",
        status=status,
        peers=await registry.list_peers(services),
        fingerprint=services.fingerprint,
        now=services.now(),
        error=outcome.get("error"),
        message=outcome.get("message"),
    )


Change = Callable[[RegistryServices, Actor, dict[str, str]], Awaitable[str]]


async def _add_member(s: RegistryServices, actor: Actor, form: dict[str, str]) -> str:
    member = await registry.add_member(s, actor, form.get("name", ""))
    return f"Member {member.name} added."


async def _remove_member(s: RegistryServices, actor: Actor, form: dict[str, str]) -> str:
    removed = await registry.remove_member(s, actor, form.get("name", ""))
    cut = ", ".join(removed.homeservers) or "no homeserver"
    return f"Member {removed.name} removed ({cut} cut off)."


async def _add_homeserver(s: RegistryServices, actor: Actor, form: dict[str, str]) -> str:
    member = await registry.add_homeserver(
        s, actor, form.get("server_name", ""), form.get("member", "")
    )
    return f"Homeserver added to {member.name}."


async def _remove_homeserver(s: RegistryServices, actor: Actor, form: dict[str, str]) -> str:
    owner = await registry.remove_homeserver(s, actor, form.get("server_name", ""))
    return f"Homeserver removed from {owner}."


async def _add_peer(s: RegistryServices, actor: Actor, form: dict[str, str]) -> str:
    added = await registry.add_peer(s, actor, form.get("url", ""), form.get("fingerprint", ""))
    checked = "verified" if added.checked else "to be verified at the next refresh"
    return f"Peer {added.peer.url} added ({checked})."


async def _remove_peer(s: RegistryServices, actor: Actor, form: dict[str, str]) -> str:
    removed = await registry.remove_peer(s, actor, form.get("peer", ""))
    return f"Peer {removed.url} removed."


CHANGES: dict[str, tuple[Change, str]] = {
    "member-add": (_add_member, "members"),
    "member-remove": (_remove_member, "members"),
    "homeserver-add": (_add_homeserver, "members"),
    "homeserver-remove": (_remove_homeserver, "members"),
    "peer-add": (_add_peer, "peers"),
    "peer-remove": (_remove_peer, "peers"),
}


async def change(request: web.Request) -> web.Response:
    action, back = CHANGES[request.match_info["change"]]
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    show = members if back == "members" else peers
    try:
        message = await action(request.config_dict[REGISTRY], Actor(request[ADMIN_USER]), form)
    except AdminError as exc:
        return await show(request, status=STATUS[exc.kind], error=exc.message)
    return await show(request, message=message)


async def members_page(request: web.Request) -> web.Response:
    return await members(request)


async def peers_page(request: web.Request) -> web.Response:
    return await peers(request)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/members", members_page, name="members")
    app.router.add_get("/peers", peers_page, name="peers")
    pattern = "|".join(CHANGES)
    app.router.add_post("/registry/{change:" + pattern + "}", change, name="registry_change")
