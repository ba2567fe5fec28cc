"""``caducee bot ...``: run the bot, and the few operator actions on its trust store."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bridge.common.exits import fail, os_reason, usage_error

if TYPE_CHECKING:
    from bot.config import BotConfig
    from bot.crypto.keyfiles import PinStore

bot_app = typer.Typer(
    help="The Caducée bot: an end-to-end encrypted Matrix bot with a cross-signed device.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="The bot's YAML configuration file.")
]

# Libraries whose debug logs may carry request bodies or tokens stay at WARNING.
_QUIET_LOGGERS = ("nio", "aiohttp", "peewee", "sqlalchemy", "aiosqlite", "asyncpg", "alembic")


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _load(path: Path) -> BotConfig:
    from bot.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        raise usage_error(str(exc)) from None


@bot_app.command("run")
def run(config: ConfigOption) -> None:
    """Log in (same device across restarts), cross-sign, and answer doctors until stopped."""
    import asyncio

    import aiohttp

    from bot.app import production_runner
    from bot.crypto.bootstrap import CrossSigningError
    from bot.runner import E2EEUnavailable
    from bot.session import LoginError
    from bot.store import StoreError

    settings = _load(config)
    _configure_logging(settings.log_level)

    async def main() -> None:
        from bot.store import missing_message
        from bot.store.initialised import missing_database

        missing = await missing_database(settings.effective_database_url)
        if missing is not None:  # before signing in: nothing happens on the homeserver
            raise StoreError(missing_message(missing, config))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await production_runner(settings).run_forever(stop)

    try:
        asyncio.run(main())
    except (CrossSigningError, E2EEUnavailable, LoginError, StoreError, ValueError) as exc:
        raise fail(str(exc)) from None
    except PermissionError as exc:
        raise fail(str(exc)) from None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise fail(
            f"cannot reach the homeserver at {settings.homeserver_url} "
            f"({type(exc).__name__}: {exc})"
        ) from None


@bot_app.command("init")
def init(config: ConfigOption) -> None:
    """Create the bot's database (or bring it to this version's schema); nothing else does.

    Run it once for a new bot, and after restoring a backup. Safe to run again.
    """
    import asyncio

    from bot.app import init_database
    from bot.store import StoreError

    settings = _load(config)

    try:
        existed = asyncio.run(init_database(settings))
    except StoreError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot create the bot's database: {os_reason(exc)}") from None
    if existed:
        typer.echo("The bot's database was already there; its schema is up to date.")
    else:
        typer.echo(f"Created the bot's database in {settings.store_dir}.")


@bot_app.command("check-config")
def check_config(config: ConfigOption) -> None:
    """Validate a configuration file without starting anything."""
    from bot.store import StoreError, normalise_url
    from bridge.common.database import sqlite_file_missing

    settings = _load(config)
    typer.echo(f"{config}: OK (bot {settings.user_id}, trust mode {settings.trust.value})")
    try:
        missing = sqlite_file_missing(normalise_url(settings.effective_database_url))
    except StoreError:  # a bad URL: `bot init` and `run` explain it
        missing = None
    if missing is not None:
        typer.echo(f"  database: {missing} (not created yet: `caducee bot init -c {config}`)")


def _pins(settings: BotConfig) -> PinStore:
    from bot.crypto.keyfiles import PinStore
    from bot.runner import PINS_FILE

    if not settings.store_dir.is_dir():
        raise fail(
            f"the bot's store {settings.store_dir} does not exist: is this the configuration "
            "the bot runs with?"
        )
    return PinStore(settings.store_dir / PINS_FILE)


def _audit(settings: BotConfig, config: Path, user_id: str, outcome: str) -> None:
    """Write the operator's decision to the bot's audit log first: without it, nothing changes."""
    import asyncio

    from bot.identity.texts import AUDIT_COMMAND
    from bot.ids import UserId
    from bot.store import (
        BotDatabase,
        BotStore,
        DatabaseMissingError,
        StoreError,
        missing_message,
    )

    async def write() -> None:
        database = await BotDatabase.open(settings.effective_database_url)
        try:
            await BotStore(database).record_audit(UserId(user_id), "", AUDIT_COMMAND, outcome)
        finally:
            await database.close()

    try:
        asyncio.run(write())
    except DatabaseMissingError as exc:
        raise fail(missing_message(exc.what, config)) from None
    except (StoreError, OSError) as exc:
        raise fail(f"cannot write the audit log, nothing changed: {exc}") from None
    except Exception as exc:  # a database driver's own error: name it, no traceback
        raise fail(f"cannot write the audit log, nothing changed ({type(exc).__name__})") from None


def _check_user_id(user_id: str) -> None:
    from bot.ids import is_user_id

    if not is_user_id(user_id):
        raise usage_error(f"{user_id!r} is not a Matrix ID (like '@name:server')")


UserArgument = Annotated[str, typer.Argument(help="The doctor's Matrix ID (@name:server).")]


@bot_app.command("pending-resets")
def pending_resets(
    config: ConfigOption,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, for scripts.")] = False,
) -> None:
    """Doctors whose cryptographic identity changed and who were not confirmed yet.

    Until a reset is confirmed (by the doctor from an earlier session, or here with
    `accept-identity`), the bot runs none of their commands and sends them no readable answer
    except the explanation. Check with the doctor by another channel (phone) before accepting.
    """
    import json
    from datetime import UTC, datetime

    pending = _pins(_load(config)).pending()
    if as_json:
        rows = [
            {
                "user_id": p.user_id,
                "since_ms": p.since_ms,
                "pinned_master_key": p.pinned,
                "new_master_key": p.seen,
            }
            for p in pending
        ]
        typer.echo(json.dumps({"pending_resets": rows}, indent=2))
        return
    if not pending:
        typer.echo("No pending identity reset.")
        return
    for p in pending:
        since = datetime.fromtimestamp(p.since_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
        typer.echo(f"{p.user_id}  since {since}  new master key {p.seen}  (pinned {p.pinned})")


@bot_app.command("audit")
def audit(
    config: ConfigOption,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="How many.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, for scripts.")] = False,
) -> None:
    """The bot's latest audit lines, newest first: who ran which command where, with what
    outcome, and each step of identity resets. Never arguments or message content."""
    import asyncio
    import json
    from datetime import UTC, datetime

    from bot.store import (
        BotDatabase,
        BotStore,
        DatabaseMissingError,
        StoreError,
        missing_message,
    )
    from bot.store.records import AuditEntry

    settings = _load(config)

    async def read() -> list[AuditEntry]:
        database = await BotDatabase.open(settings.effective_database_url)
        try:
            return await BotStore(database).audit_entries(limit=limit)
        finally:
            await database.close()

    try:
        entries = asyncio.run(read())
    except DatabaseMissingError as exc:
        raise fail(missing_message(exc.what, config)) from None
    except (StoreError, OSError) as exc:
        raise fail(f"cannot read the audit log: {exc}") from None
    if as_json:
        rows = [
            {
                "ts_ms": e.ts_ms,
                "sender": e.sender,
                "room_id": e.room_id,
                "command": e.command,
                "outcome": e.outcome,
            }
            for e in entries
        ]
        typer.echo(json.dumps({"audit": rows}, indent=2))
        return
    for e in entries:
        when = datetime.fromtimestamp(e.ts_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        typer.echo(f"{when}  {e.sender}  {e.command}  {e.outcome}  {e.room_id or '-'}")


@bot_app.command("accept-identity")
def accept_identity(config: ConfigOption, user_id: UserArgument) -> None:
    """Accept a doctor's pending new identity, after checking with them that they reset it.

    The running bot picks the decision up within seconds: their sessions signed by the new
    identity read its answers again. Recorded in the audit log.
    """
    from bot.identity.texts import Outcome

    _check_user_id(user_id)
    settings = _load(config)
    pins = _pins(settings)
    pending = {p.user_id: p for p in pins.pending()}
    if user_id not in pending:
        raise fail(f"No pending identity reset for {user_id} (see `pending-resets`).")
    _audit(settings, config, user_id, Outcome.ACCEPTED_BY_OPERATOR.value)
    pins.accept(user_id)
    typer.echo(f"Accepted the new identity of {user_id} (master key {pending[user_id].seen}).")


@bot_app.command("forget-identity")
def forget_identity(config: ConfigOption, user_id: UserArgument) -> None:
    """Drop a user's pinned identity: the next one seen is pinned, whatever it is.

    Prefer `accept-identity`, which accepts exactly the key that is pending. The running bot
    picks the change up within seconds. Recorded in the audit log.
    """
    from bot.identity.texts import Outcome

    _check_user_id(user_id)
    settings = _load(config)
    pins = _pins(settings)
    if pins.get(user_id) is None and user_id not in pins.changed():
        typer.echo(f"No identity was pinned for {user_id}.")
        return
    _audit(settings, config, user_id, Outcome.FORGOTTEN_BY_OPERATOR.value)
    pins.forget(user_id)
    typer.echo(f"Forgot the pinned identity of {user_id}; the next one seen will be trusted.")


if __name__ == "__main__":  # `python -m bot.cli run --config FILE`, same as `caducee bot run`
    bot_app()
