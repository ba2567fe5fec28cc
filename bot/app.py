"""The production bot: the commands' dispatcher, its database, the directory client and the
expiry engine, assembled around a started `BotRunner` (the runner owns Matrix and crypto).

Kept apart from the runner so the runner can run any message handler (tests use trivial
ones) and the parts below stay optional imports of the shell. The runner knows nothing of this
module: the assembly hands it the handler factory (`production_runner`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from bot.bridge_client import DirectoryClient, DirectoryUnavailable, Practitioner, SearchPage
from bot.config import BotConfig
from bot.crypto.keyfiles import PRIVATE_FILE_MODE, ensure_private_file
from bot.events import MessageHandler
from bot.ids import UserId
from bot.matrix.actions import NioActions
from bot.runner import BotRunner, HandlerFactory

if TYPE_CHECKING:
    from bot.commands.registry import CaseLifecycle
    from bot.identity.gate import IdentityGate
    from bot.identity.report import ResetReporter
    from bot.store import BotStore

logger = logging.getLogger(__name__)


class UnavailableDirectory:
    """Stands in for the bridge when none is configured: !find says the directory is down."""

    async def search(self, query: str, *, limit: int = 10, offset: int = 0) -> SearchPage:
        raise DirectoryUnavailable("no bridge_url configured")

    async def accounts(self, user_ids: Sequence[UserId]) -> dict[UserId, Practitioner]:
        raise DirectoryUnavailable("no bridge_url configured")


async def init_database(config: BotConfig) -> bool:
    """What `caducee bot init` does: create the bot's database (0600 for SQLite) or bring it
    to this version's schema; True when it was already there. Nothing else creates it.

    Raises:
        StoreError: the database cannot be reached, or was written by a newer bot.
        OSError: the store folder or the SQLite file cannot be created.
    """
    from bot.store import BotDatabase
    from bot.store.initialised import missing_database

    url = config.effective_database_url
    existed = await missing_database(url) is None
    if config.database_url is None:
        config.store_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        ensure_private_file(config.store_dir / "bot.db")
    database = await BotDatabase.open(url, create=True)
    await database.close()
    return existed


def production_runner(config: BotConfig) -> BotRunner:
    """The bot as `caducee bot run` starts it (and the `bot_a` test fixture)."""
    runner: BotRunner

    async def build(actions: NioActions, stack: AsyncExitStack) -> MessageHandler:
        return await production_handler(config, runner)(actions, stack)

    runner = BotRunner(config, build)
    return runner


def reset_reporter(
    bridge_url: str, token: str, bot: str, gate: IdentityGate, store: BotStore
) -> ResetReporter:
    """Tell the bridge about pending identity resets, at start and at each change."""
    from bot.identity.report import ResetReporter
    from bot.identity.texts import AUDIT_COMMAND

    async def outcome_of(user_id: str) -> str | None:
        return await store.latest_outcome(user_id, AUDIT_COMMAND)

    pins = gate.pins
    reporter = ResetReporter(bridge_url, token, bot, pins.pending, outcome_of)
    gate.on_change = reporter.changed
    return reporter


def production_handler(config: BotConfig, runner: BotRunner) -> HandlerFactory:
    """The commands and the expiry engine around a started `runner`."""

    async def build(actions: NioActions, stack: AsyncExitStack) -> MessageHandler:
        from bot.commands.builtin import default_registry
        from bot.commands.context import CommandSettings
        from bot.commands.dispatcher import CommandDispatcher
        from bot.expiry import ExpiryEngine, ExpirySettings, ExpiryStore
        from bot.expiry.admin import SynapseExpiryAdmin, read_admin_token
        from bot.expiry.close import ExpiryLifecycle
        from bot.expiry.command import expire_command
        from bot.expiry.nio_matrix import ExpiryListener, NioExpiryMatrix
        from bot.store import BotDatabase, BotStore

        sqlite_file = config.store_dir / "bot.db"
        if config.database_url is None and sqlite_file.exists():
            sqlite_file.chmod(PRIVATE_FILE_MODE)  # owner-only, even if someone widened it
        # Created by `caducee bot init`, never here.
        database = await BotDatabase.open(config.effective_database_url)
        stack.push_async_callback(database.close)
        store = BotStore(database)
        if runner.identity_gate is not None:
            runner.identity_gate.audit = store.record_audit
        runner.on_direct_join = lambda room, inviter: store.record_direct_room(inviter, room)
        schedule = ExpiryStore(database)

        admin = None
        if config.admin_token_file is not None:
            admin = SynapseExpiryAdmin(
                config.homeserver_url, read_admin_token(config.admin_token_file)
            )
            stack.push_async_callback(admin.close)
        assert runner.client is not None
        engine = ExpiryEngine(
            schedule=schedule,
            cases=store,
            matrix=NioExpiryMatrix(runner.client),
            server_name=config.server_name,
            admin=admin,
            settings=ExpirySettings(delete_media=config.delete_expired_media),
        )
        await engine.start()  # before the first sync: anchors the catch-up
        engine_task = asyncio.create_task(engine.run(), name="expiry engine")

        async def stop_engine() -> None:
            engine_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await engine_task

        stack.push_async_callback(stop_engine)
        runner.add_listener(ExpiryListener(engine))

        directory: Any
        token = config.bridge_token_value()
        if config.bridge_url is not None and token is not None:
            client = DirectoryClient(config.bridge_url, token)
            stack.push_async_callback(client.close)
            directory = client
            if runner.identity_gate is not None:
                reporter = reset_reporter(
                    config.bridge_url, token, config.user_id, runner.identity_gate, store
                )
                stack.push_async_callback(reporter.aclose)
                reporter.start()
        else:
            directory = UnavailableDirectory()
        registry = default_registry()
        registry.add(expire_command(engine))
        from bot.cases.export.command import export_command
        from bot.cases.export.nio_port import NioExportPort

        export_port = NioExportPort(runner.client, actions)
        registry.add(
            export_command(export_port, expiry=engine, default_lifetime_s=config.default_ttl)
        )
        lifecycle = ExpiryLifecycle(engine)
        dispatcher = CommandDispatcher(
            actions=actions,
            store=store,
            directory=directory,
            settings=CommandSettings(
                default_ttl_seconds=config.default_ttl,
                min_ttl_seconds=config.min_ttl,
                max_ttl_seconds=config.max_ttl,
                member_servers=runner.member_servers,
            ),
            registry=registry,
            lifecycle=lifecycle,
        )
        from bot.cases.export.command import finish_interrupted_exports

        async def finish_interrupted() -> None:
            """What a stopped bot left half done: closes, then exports sent but unrecorded."""
            try:
                await _finish_interrupted_closes(runner, actions, store, lifecycle)
                exports = await finish_interrupted_exports(
                    export_port,
                    store,
                    expiry=engine,
                    default_lifetime_s=config.default_ttl,
                )
            except Exception as exc:  # never the bot's death: the next start tries again
                logger.error("interrupted commands not checked: %s", type(exc).__name__)
                return
            if exports:
                logger.info("finished %d interrupted case export(s)", exports)

        resume_task = asyncio.create_task(finish_interrupted(), name="interrupted commands")

        async def stop_resume() -> None:
            resume_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await resume_task

        stack.push_async_callback(stop_resume)
        from bot.cases.warnings import run_warnings

        warnings_task = asyncio.create_task(run_warnings(actions, store), name="case warnings")

        async def stop_warnings() -> None:
            warnings_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await warnings_task

        stack.push_async_callback(stop_warnings)
        return dispatcher.handle

    return build


async def _finish_interrupted_closes(
    runner: BotRunner, actions: NioActions, store: BotStore, lifecycle: CaseLifecycle
) -> None:
    """Finish the closes a stopped bot left half done (`finish_interrupted_closes`)."""
    from nio import JoinedRoomsResponse

    from bot.commands.case import finish_interrupted_closes

    assert runner.client is not None
    response = await runner.client.joined_rooms()
    if not isinstance(response, JoinedRoomsResponse):
        logger.warning("could not list the bot's rooms: interrupted closes not checked")
        return
    finished = await finish_interrupted_closes(actions, store, lifecycle, response.rooms)
    if finished:
        logger.info("finished %d interrupted case close(s)", finished)
