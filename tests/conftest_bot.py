"""Pytest plugin: a running Caducée bot on hs_a (``bot_a``), and helpers to start more.

Registered from tests/conftest.py with ``pytest_plugins``. The bot runs in-process as asyncio
tasks, with its real configuration loader, crypto store, cross-signing and command dispatcher.
No bridge runs here, so ``!find`` answers that the directory is unavailable.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.app import init_database, production_runner
from bot.config import BotConfig, parse_config
from bot.runner import BotRunner, HandlerFactory
from deploy.local.federation import Homeserver
from tests.matrix_helpers import unique


async def bot_config(
    hs: Homeserver,
    base_dir: Path,
    member_servers: list[str],
    *,
    localpart: str | None = None,
    password: str | None = None,
    **overrides: Any,
) -> BotConfig:
    """Register a bot account on `hs` (unless `password` says it exists) and configure it."""
    if password is None:
        password = secrets.token_urlsafe(16)
        localpart = localpart or unique("caducee")
        await hs.register_user(localpart, password)
    assert localpart is not None
    data: dict[str, Any] = {
        "homeserver_url": hs.client_url,
        "user_id": f"@{localpart}:{hs.server_name}",
        "password": password,
        "store_dir": str(base_dir / "store"),
        "pickle_key_file": str(base_dir / "secrets" / "pickle-key"),
        "member_servers": member_servers,
        "log_level": "INFO",
    }
    data.update(overrides)
    return parse_config(data, source="test bot config", base_dir=base_dir)


async def start_bot(config: BotConfig, handler_factory: HandlerFactory | None = None) -> BotRunner:
    if handler_factory is None:
        await init_database(config)  # `caducee bot init`: the bot itself never creates it
    runner = (
        production_runner(config) if handler_factory is None else BotRunner(config, handler_factory)
    )
    await runner.start()
    return runner


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def bot_a(
    hs_a: Homeserver, hs_b: Homeserver, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[BotRunner]:
    """The bot of hs_a, serving members of hs_a and hs_b (strict trust: cross-signed only)."""
    config = await bot_config(
        hs_a, tmp_path_factory.mktemp("bot_a"), [hs_a.server_name, hs_b.server_name]
    )
    runner = await start_bot(config)
    try:
        yield runner
    finally:
        await runner.stop()
