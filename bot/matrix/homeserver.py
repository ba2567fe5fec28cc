"""Raw JSON calls to the client-server API, for the requests nio has no call for
(`bot.matrix.requests` builds them), the bot's login among them.

They go out through the client's public `send`, so the bot's `RequestGate` paces them like
nio's own; nio neither parses their answers nor changes its state for them.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from bot.crypto.signing import Json


class HomeserverJson(Protocol):
    """An authenticated JSON call to the client-server API."""

    async def request_json(self, method: str, path: str, body: Json | None) -> tuple[int, Json]:
        """Returns the HTTP status and the decoded JSON body ({} when not JSON)."""
        ...


class NioJson:
    """`HomeserverJson` over a logged-in nio `AsyncClient` (reuses its HTTP session)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    async def request_json(self, method: str, path: str, body: Json | None) -> tuple[int, Json]:
        return await send_json(self._client, method, path, body, self._client.access_token)


async def send_json(
    client: Any,
    method: str,
    path: str,
    body: Json | None,
    token: str | None,
    *,
    timeout: float | None = None,
) -> tuple[int, Json]:
    """One JSON call through `client.send`, as `token` (none for a login); returns the HTTP
    status and the decoded JSON body ({} when not a JSON object). `timeout`: seconds, nio's
    `request_timeout` when None."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body)
    response = await client.send(method, path, data, headers, timeout=timeout)
    try:
        parsed = await response.json(content_type=None)
    except ValueError:
        parsed = {}
    finally:
        response.release()
    return response.status, parsed if isinstance(parsed, dict) else {}
