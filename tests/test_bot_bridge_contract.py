"""The bot's side of the directory search, held to the bridge's OpenAPI document.

What the bot's client sends (method, path, parameters, token) must be a request the document
describes, and what it reads from the answer must be what the document says the bridge sends,
no more. The bridge's own answers are held to the same document by
``tests/test_bridge_http.py``, so a change on either side that the other does not follow
fails one of the two.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import jsonschema
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot import bridge_client
from bot.commands.context import CommandSettings
from bot.commands.find import MAX_RESULTS
from bot.commands.parsing import ArgumentError
from bot.commands.policy import QUERY_MAX_CHARS, parse_query
from bridge.common import api
from bridge.http.meta_routes import openapi_document

DOCUMENT = openapi_document()
TOKEN = "bot-" + "t" * 40


def validator(schema: Mapping[str, Any]) -> jsonschema.protocols.Validator:
    """A validator of `schema` that resolves the document's `#/components/...` references."""
    return jsonschema.Draft202012Validator({**DOCUMENT, **schema})


def component(name: str) -> dict[str, Any]:
    schema = DOCUMENT["components"]["schemas"][name]
    assert isinstance(schema, dict)
    return schema


def query_parameters(method: str, path: str) -> dict[str, dict[str, Any]]:
    """The documented query parameters of an operation, by name (references resolved)."""
    operation = DOCUMENT["paths"][path][method.lower()]
    found = {}
    for parameter in operation.get("parameters", []):
        if "$ref" in parameter:
            name = parameter["$ref"].rsplit("/", 1)[1]
            parameter = DOCUMENT["components"]["parameters"][name]
        if parameter["in"] == "query":
            found[parameter["name"]] = parameter
    return found


def documented_page() -> dict[str, Any]:
    """A search answer made of the document's own examples, valid against its schema."""
    practitioner = {
        name: field["examples"][0]
        for name, field in component("Practitioner")["properties"].items()
    }
    page: dict[str, Any] = {"total": 2, "more": False, "limit": 10, "offset": 0}
    page["results"] = [practitioner, {**practitioner, "matrix_id": None}]
    validator({"$ref": "#/components/schemas/SearchPage"}).validate(page)
    return page


class Reading(Mapping[str, Any]):
    """A JSON object that notes every key read from it (nested objects included)."""

    def __init__(self, data: Mapping[str, Any], seen: set[str], item_seen: set[str]) -> None:
        self._data, self._seen, self._item_seen = data, seen, item_seen

    def __getitem__(self, key: str) -> Any:
        self._seen.add(key)
        value = self._data[key]
        if isinstance(value, list):
            return [Reading(v, self._item_seen, set()) if isinstance(v, dict) else v for v in value]
        return value

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("the bot reads the keys it knows, it does not walk the answer")

    def __len__(self) -> int:
        return len(self._data)


@pytest.fixture
async def recording_bridge() -> AsyncIterator[tuple[str, list[web.Request]]]:
    """A server that answers every request with the documented page and keeps the requests."""
    seen: list[web.Request] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request)
        return web.json_response(documented_page())

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    server = TestServer(app)
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), seen
    finally:
        await server.close()


async def test_the_bots_search_is_a_request_the_document_describes(
    recording_bridge: tuple[str, list[web.Request]],
) -> None:
    base, seen = recording_bridge
    client = bridge_client.DirectoryClient(base, TOKEN)
    try:
        page = await client.search("x" * QUERY_MAX_CHARS, limit=MAX_RESULTS, offset=3)
    finally:
        await client.close()
    assert page.total == 2
    (request,) = seen
    assert request.method.lower() in DOCUMENT["paths"][request.path]
    assert "bearer" in DOCUMENT["components"]["securitySchemes"]
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    documented = query_parameters(request.method, request.path)
    assert set(request.query) <= set(documented)
    assert {n for n, p in documented.items() if p.get("required")} <= set(request.query)
    for name, raw in request.query.items():
        schema = documented[name]["schema"]
        value: Any = int(raw) if schema.get("type") == "integer" else raw
        validator(schema).validate(value)


def test_the_shared_limits_are_the_documented_ones() -> None:
    documented = query_parameters("GET", api.SEARCH_PATH)
    assert QUERY_MAX_CHARS == api.MAX_QUERY_LENGTH == documented["q"]["schema"]["maxLength"]
    limit, offset = documented["limit"]["schema"], documented["offset"]["schema"]
    assert (limit["maximum"], limit["default"], offset["maximum"]) == (
        api.MAX_LIMIT,
        api.DEFAULT_LIMIT,
        api.MAX_OFFSET,
    )
    assert 1 <= MAX_RESULTS <= limit["maximum"]
    settings = CommandSettings(60, 60, 60, member_servers={"hs-a.test"})
    assert parse_query(["x" * QUERY_MAX_CHARS], settings)
    with pytest.raises(ArgumentError, match=str(QUERY_MAX_CHARS)):
        parse_query(["x" * (QUERY_MAX_CHARS + 1)], settings)


def test_the_bot_reads_only_what_the_document_says_the_bridge_sends() -> None:
    page = documented_page()
    read_from_page: set[str] = set()
    read_from_results: set[str] = set()
    parsed = bridge_client.parse_search_response(Reading(page, read_from_page, read_from_results))
    assert read_from_page <= set(component("SearchPage")["properties"])
    practitioner = component("Practitioner")
    assert read_from_results <= set(practitioner["properties"])
    # Every documented field is the bot's too: a field added or renamed on one side shows.
    fields = {f.name for f in dataclasses.fields(bridge_client.Practitioner)}
    assert fields == set(practitioner["properties"]) == set(practitioner["required"])
    assert read_from_results == fields
    first, second = parsed.results
    assert dataclasses.asdict(first) == page["results"][0]
    assert second.matrix_id is None
