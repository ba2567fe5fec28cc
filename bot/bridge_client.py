"""The bot's client of the bridge's directory API (``GET /_caducee/v1/directory/search``).

The path and the limits come from `bridge.common.api`; the answer is read as the bridge's
OpenAPI document describes it, and only so (``tests/test_bot_bridge_contract.py``).

The bot authenticates with a service token (``Authorization: Bearer``). Whatever goes wrong on
the way - bridge down, timeout, 5xx, refused token, unreadable answer - surfaces as one
`DirectoryUnavailable`, which the commands turn into a plain "directory unavailable" reply;
the operator gets a log line with the cause (never the token, never the query).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from bot.ids import UserId
from bridge.common.api import ACCOUNTS_PATH, SEARCH_PATH

logger = logging.getLogger(__name__)

ACCOUNTS_PER_REQUEST: Final = 50
DEFAULT_TIMEOUT: Final = aiohttp.ClientTimeout(total=10, connect=3)


class DirectoryUnavailable(Exception):
    """The directory could not answer. The message is for logs (no token, no query)."""


@dataclass(frozen=True, slots=True)
class Practitioner:
    """One directory result, as the bot shows it."""

    rpps: str
    display_name: str
    profession: str
    specialty: str
    city: str
    postcode: str
    matrix_id: UserId | None  # None when not onboarded or hidden by the practitioner


@dataclass(frozen=True, slots=True)
class SearchPage:
    """A page of results and the total number of matches."""

    results: tuple[Practitioner, ...]
    total: int
    more: bool = False
    """`total` is a floor: more practitioners match than the directory counts (it caps its
    count, "500+"); the query is to be narrowed, not paged through."""


def _text(item: Mapping[str, Any], key: str) -> str:
    value = item.get(key)
    return value if isinstance(value, str) else ""


def parse_search_response(payload: object) -> SearchPage:
    """Read the bridge's JSON answer (pure; raises `DirectoryUnavailable` if malformed)."""
    if not isinstance(payload, Mapping):
        raise DirectoryUnavailable("directory answer is not a JSON object")
    raw = payload.get("results")
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise DirectoryUnavailable("directory answer has no 'results' list")
    results: list[Practitioner] = []
    for item in raw:
        if not isinstance(item, Mapping):
            raise DirectoryUnavailable("directory result is not a JSON object")
        rpps = _text(item, "rpps")
        if not rpps:
            raise DirectoryUnavailable("directory result without an RPPS number")
        mxid = _text(item, "matrix_id")
        results.append(
            Practitioner(
                rpps=rpps,
                display_name=_text(item, "display_name") or rpps,
                profession=_text(item, "profession"),
                specialty=_text(item, "specialty"),
                city=_text(item, "city"),
                postcode=_text(item, "postcode"),
                matrix_id=UserId(mxid) if mxid else None,
            )
        )
    total = payload.get("total")
    count = total if isinstance(total, int) and total >= len(results) else len(results)
    return SearchPage(tuple(results), count, more=payload.get("more") is True)


class DirectoryClient:
    """Searches the federation's practitioner directory over the bridge's HTTP API.

    One aiohttp session per client, created lazily inside the running event loop; call
    `close()` on shutdown.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def search(self, query: str, *, limit: int = 10, offset: int = 0) -> SearchPage:
        """Search the directory as a doctor types it ("cardio lyon", a name, an RPPS number)."""
        params = {"q": query, "limit": str(limit), "offset": str(offset)}
        return parse_search_response(await self._get(SEARCH_PATH, params))

    async def accounts(self, user_ids: Sequence[UserId]) -> dict[UserId, Practitioner]:
        """The register's practitioner of each account, by the link made at onboarding
        (never by display name); accounts without a visible link are left out."""
        found: dict[UserId, Practitioner] = {}
        ids = list(dict.fromkeys(user_ids))
        for start in range(0, len(ids), ACCOUNTS_PER_REQUEST):
            params = [("matrix_id", u) for u in ids[start : start + ACCOUNTS_PER_REQUEST]]
            page = parse_search_response(await self._get(ACCOUNTS_PATH, params))
            asked = set(ids)
            for practitioner in page.results:
                if practitioner.matrix_id is not None and practitioner.matrix_id in asked:
                    found[practitioner.matrix_id] = practitioner
        return found

    async def _get(self, path: str, params: Any) -> object:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            async with self._session.get(
                self._base_url + path, params=params, headers=headers
            ) as resp:
                if resp.status != 200:
                    logger.warning("directory answered HTTP %d", resp.status)
                    raise DirectoryUnavailable(f"directory answered HTTP {resp.status}")
                payload: object = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            logger.warning("directory request failed: %s", type(exc).__name__)
            raise DirectoryUnavailable(f"directory unreachable ({type(exc).__name__})") from exc
        return payload

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
