"""The directory's HTTP API: `GET /_caducee/v1/directory/search`, and
`GET /_caducee/v1/directory/accounts` (who Matrix accounts are in the register).

The path and the limits are the bot's too (`bridge.common.api`). Parameter checking
is a pure function, so the rules (and their messages, which the bot may show
to a doctor) are tested without a server. The handler only opens a session and shapes JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bridge.common.api import (
    ACCOUNTS_PATH,
    DEFAULT_LIMIT,
    MAX_ACCOUNTS,
    MAX_LIMIT,
    MAX_MATRIX_ID_LENGTH,
    MAX_OFFSET,
    MAX_QUERY_LENGTH,
    SEARCH_PATH,
)
from bridge.directory.accounts import practitioners_by_matrix_id
from bridge.directory.search import SearchPage, SearchResult, search_directory
from bridge.http.errors import M_INVALID_PARAM, M_MISSING_PARAM, ApiError
from bridge.http.keys import DATABASE


@dataclass(frozen=True, slots=True)
class SearchParams:
    query: str
    limit: int
    offset: int


def _integer(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw.strip(), 10)
    except ValueError:
        raise ApiError(400, M_INVALID_PARAM, f"'{name}' must be a whole number") from None
    if not low <= value <= high:
        raise ApiError(400, M_INVALID_PARAM, f"'{name}' must be between {low} and {high}")
    return value


def parse_search_params(params: Mapping[str, str]) -> SearchParams:
    """Validate the query string of a search request; ApiError 400 with a clear message."""
    raw_query = params.get("q")
    if raw_query is None:
        raise ApiError(400, M_MISSING_PARAM, "'q' is required: the text to search for")
    query = " ".join(raw_query.split())
    if not query:
        raise ApiError(400, M_INVALID_PARAM, "'q' must not be empty")
    if len(query) > MAX_QUERY_LENGTH:
        raise ApiError(
            400, M_INVALID_PARAM, f"'q' is too long (at most {MAX_QUERY_LENGTH} characters)"
        )
    limit = _integer(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _integer(params, "offset", 0, 0, MAX_OFFSET)
    return SearchParams(query=query, limit=limit, offset=offset)


def parse_accounts_params(values: list[str]) -> list[str]:
    """The ``matrix_id`` parameters of an accounts request; ApiError 400 with a clear message."""
    if not values:
        raise ApiError(400, M_MISSING_PARAM, "'matrix_id' is required: a Matrix ID to look up")
    if len(values) > MAX_ACCOUNTS:
        raise ApiError(
            400, M_INVALID_PARAM, f"at most {MAX_ACCOUNTS} 'matrix_id' parameters per request"
        )
    for value in values:
        localpart, colon, server = value.partition(":")
        if (
            not value.startswith("@")
            or not colon
            or len(localpart) < 2
            or not server
            or len(value) > MAX_MATRIX_ID_LENGTH
        ):
            raise ApiError(400, M_INVALID_PARAM, "'matrix_id' must look like @name:server")
    return values


def result_json(result: SearchResult) -> dict[str, Any]:
    return {
        "rpps": str(result.rpps),
        "display_name": result.display_name,
        "profession": result.profession,
        "specialty": result.specialty,
        "city": result.city,
        "postcode": result.postcode,
        "matrix_id": None if result.matrix_id is None else str(result.matrix_id),
    }


def page_json(page: SearchPage, params: SearchParams) -> dict[str, Any]:
    return {
        "total": page.total,
        "more": page.more,  # total is a floor: more match (shown as "500+")
        "limit": params.limit,
        "offset": params.offset,
        "results": [result_json(r) for r in page.results],
    }


async def search(request: web.Request) -> web.Response:
    params = parse_search_params(request.query)
    async with request.app[DATABASE].sessions() as session:
        page = await search_directory(
            session, params.query, limit=params.limit, offset=params.offset
        )
    return web.json_response(page_json(page, params))


async def accounts(request: web.Request) -> web.Response:
    matrix_ids = parse_accounts_params(request.query.getall("matrix_id", []))
    async with request.app[DATABASE].sessions() as session:
        found = await practitioners_by_matrix_id(session, matrix_ids)
    return web.json_response({"results": [result_json(r) for r in found]})


def add_routes(app: web.Application) -> None:
    app.router.add_get(SEARCH_PATH, search, name="directory_search")
    app.router.add_get(ACCOUNTS_PATH, accounts, name="directory_accounts")
