"""The bot's commands: one registry, pure parsing and policy, and a dispatcher over them.

The E2EE shell (bot/app.py, bot/events.py) builds a `CommandDispatcher` and hands it every
decrypted text message; everything the commands do on Matrix goes through the `MatrixActions`
protocol from `bot.commands.context`, so the commands are tested with an in-memory Matrix and a
real bridge.
"""

from __future__ import annotations
