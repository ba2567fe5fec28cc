"""The bridge's HTTP API where the bot calls it (the directory search), defined once.

The bridge serves it (`bridge.http.directory_routes`), the bot calls it
(`bot.bridge_client`) and checks what doctors type against the same limits
(`bot.commands.policy`). The OpenAPI document (``bridge/http/openapi.yaml``) describes it, the
answer's fields included; ``tests/test_bot_bridge_contract.py`` holds the bot to that document,
and ``tests/test_bridge_http.py`` the bridge.
"""

from __future__ import annotations

from typing import Final

API_PREFIX: Final = "/_caducee/v1"
SEARCH_PATH: Final = f"{API_PREFIX}/directory/search"
"""``GET``, with ``q``, ``limit`` and ``offset`` in the query string."""

ACCOUNTS_PATH: Final = f"{API_PREFIX}/directory/accounts"
"""``GET``, with ``matrix_id`` repeated (up to ``MAX_ACCOUNTS``): the practitioners linked to
those accounts, where the link is visible."""
MAX_ACCOUNTS: Final = 50
MAX_MATRIX_ID_LENGTH: Final = 255

MAX_QUERY_LENGTH: Final = 200
"""Characters of ``q`` after its spaces are normalised."""
DEFAULT_LIMIT: Final = 10
MAX_LIMIT: Final = 50
MAX_OFFSET: Final = 10_000
