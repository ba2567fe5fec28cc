"""The bot on Matrix, through matrix-nio.

- `nio_private`: every use of nio's private API, and nowhere else (each behaviour it relies
  on is pinned by `tests/test_bot_nio_private.py`).
- `requests`: the client-server requests the bot builds itself, like `nio.api.Api`;
  `homeserver`: the raw JSON call that sends them (`NioJson`).
- `client`: `CaduceeClient`, the bot's `AsyncClient`.
- `actions`: `NioActions`, the `MatrixActions` the commands call.
- `power_levels`: the power-level rules (pure).

Imports: `actions` -> `client` -> `requests` -> `nio_private`; `homeserver` and
`power_levels` use nothing of the bot but its types. `bot.session` (login) and
`bot.crypto.bootstrap` (cross-signing) send their requests through `requests` and
`homeserver` too, so those two import nothing of the bot above `nio_private`.
"""
