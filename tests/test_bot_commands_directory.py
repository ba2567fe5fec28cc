"""The bot's directory client over real HTTP: what it sends, and every way the bridge can
fail turned into one `DirectoryUnavailable`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.bridge_client import DirectoryClient, DirectoryUnavailable
from tests.bot_commands_support import DIRECTORY_TOKEN

RESULT = {  # one result as the bridge documents it (bridge/http/openapi.yaml)
    "rpps": "10000000001",
    "display_name": "Dr A",
    "profession": "Médecin",
    "specialty": "Pédiatrie",
    "city": "Lyon",
    "postcode": "69003",
    "matrix_id": None,
}
HandlerFn = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _serve(handler: HandlerFn) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/_caducee/v1/directory/search", handler)
    server = TestServer(app)
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def test_search_sends_the_token_and_parameters() -> None:
    seen: list[tuple[str | None, dict[str, str]]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.headers.get("Authorization"), dict(request.query)))
        return web.json_response({"total": 1, "results": [RESULT]})

    async for base in _serve(handler):
        client = DirectoryClient(base + "/", DIRECTORY_TOKEN)
        page = await client.search("cardio lyon", limit=10, offset=5)
        await client.close()
    assert seen == [
        (f"Bearer {DIRECTORY_TOKEN}", {"q": "cardio lyon", "limit": "10", "offset": "5"})
    ]
    assert page.total == 1 and page.results[0].display_name == "Dr A"


async def _never_answers(request: web.Request) -> web.Response:
    await asyncio.Event().wait()  # until the client gives up
    raise AssertionError("unreachable")


async def _server_error(request: web.Request) -> web.Response:
    return web.json_response({"errcode": "M_UNKNOWN", "error": "boom"}, status=500)


async def _not_json(request: web.Request) -> web.Response:
    return web.Response(text="<html>proxy error</html>", content_type="text/html")


async def _wrong_shape(request: web.Request) -> web.Response:
    return web.json_response({"hits": []})


@pytest.mark.parametrize(
    ("handler", "cause"),
    [
        (_never_answers, "TimeoutError"),
        (_server_error, "HTTP 500"),
        (_not_json, "JSONDecodeError"),
        (_wrong_shape, "no 'results' list"),
    ],
)
async def test_every_failure_is_directory_unavailable(handler: HandlerFn, cause: str) -> None:
    async for base in _serve(handler):
        client = DirectoryClient(base, DIRECTORY_TOKEN, timeout=aiohttp.ClientTimeout(total=0.5))
        with pytest.raises(DirectoryUnavailable, match=cause) as excinfo:
            await client.search("martin")
        await client.close()
        assert DIRECTORY_TOKEN not in str(excinfo.value) and "martin" not in str(excinfo.value)


async def test_a_bridge_that_is_down_is_unavailable(unused_tcp_port: int) -> None:
    client = DirectoryClient(f"http://127.0.0.1:{unused_tcp_port}", DIRECTORY_TOKEN)
    with pytest.raises(DirectoryUnavailable, match="unreachable"):
        await client.search("martin")
    await client.close()
