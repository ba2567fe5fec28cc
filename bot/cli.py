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

    from bot.crypto.bootstrap import CrossSigningError
    from bot.runner import BotRunner, E2EEUnavailable
    from bot.session import LoginError
    from bot.store import StoreError

    settings = _load(config)
    _configure_logging(settings.log_level)

    async def main() -> None:
        from bot.store.initialised import missing_database

        missing = await missing_database(settings.effective_database_url)
        if missing is not None:
            raise StoreError(
                f"{missing}: the bot never creates its database when it runs (a lost volume "
                "or a wrong path would otherwise start a bot that forgot its case rooms and "
                f"expiries). Check database_url / store_dir; for a new bot, run "
                f"`caducee bot init -c {config}` once."
            )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await BotRunner(settings).run_forever(stop)

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
    """Create the bot's database (or bring it to this version's schema); `run` never does.

    Run it once for a new bot, and after restoring a backup. Safe to run again.
    """
    import asyncio

    from bot.crypto.keyfiles import ensure_private_file
    from bot.store import BotStore, StoreError
    from bot.store.initialised import missing_database

    settings = _load(config)
    url = settings.effective_database_url

    async def create() -> bool:
        existed = await missing_database(url) is None
        if settings.database_url is None:
            settings.store_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            ensure_private_file(settings.store_dir / "bot.db")
        store = await BotStore.open(url)
        await store.close()
        return existed

    try:
        existed = asyncio.run(create())
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
    settings = _load(config)
    typer.echo(f"{config}: OK (bot {settings.user_id}, trust mode {settings.trust.value})")


@bot_app.command("forget-identity")
def forget_identity(
    config: ConfigOption,
    user_id: Annotated[str, typer.Argument(help="The Matrix ID whose pinned identity to drop.")],
) -> None:
    """Accept a user's new cross-signing identity: the next one seen is pinned.

    Run it after checking with the doctor that they reset their identity themselves; until
    then the bot sends them no room keys. Restart the bot (or wait for their next key change).
    """
    from bot.crypto.keyfiles import PinStore
    from bot.ids import is_user_id
    from bot.runner import PINS_FILE

    settings = _load(config)
    user_id = user_id.strip()
    if not is_user_id(user_id):
        raise usage_error(f"{user_id!r} is not a Matrix ID (like '@name:server')")
    if not settings.store_dir.is_dir():
        raise fail(
            f"the bot's store {settings.store_dir} does not exist: is {config} the "
            "configuration the bot runs with?"
        )
    pins = PinStore(settings.store_dir / PINS_FILE)
    try:
        forgotten = pins.forget(user_id)
    except OSError as exc:
        raise fail(
            f"cannot update the bot's trust store in {settings.store_dir}: {os_reason(exc)}"
        ) from None
    if forgotten:
        typer.echo(f"Forgot the pinned identity of {user_id}; the next one seen will be trusted.")
    else:
        typer.echo(f"No identity was pinned for {user_id}.")


if __name__ == "__main__":  # `python -m bot.cli run --config FILE`, same as `caducee bot run`
    bot_app()
