"""The bot's command set, in the order ``!help`` shows it."""

from __future__ import annotations

from bot.commands.case import CASE_CLOSE, CASE_INVITE, CASE_NEW
from bot.commands.find import FIND
from bot.commands.help import help_command
from bot.commands.registry import Registry


def default_registry() -> Registry:
    """A fresh registry with every command that needs only the commands' services.

    ``!expire`` and ``!case export`` need the running expiry engine and Matrix client:
    `bot.app.production_handler` adds them.
    """
    registry = Registry()
    registry.extend([FIND, CASE_NEW, CASE_INVITE, CASE_CLOSE])
    registry.add(help_command(registry))
    return registry
