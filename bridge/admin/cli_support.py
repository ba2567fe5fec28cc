"""What every `caducee admin ...` command shares: the `--config` option, the actor recorded in
the audit log, and running one piece of work against the bridge's database.

A problem is one line on stderr and exit status 2, never a traceback: an admin at a shell
must see what to fix (the configuration, the database, the input), not where the code was.
"""

from __future__ import annotations

import getpass
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

if TYPE_CHECKING:  # imported when a command runs: `caducee --help` stays quick
    from bridge.admin.model import Actor
    from bridge.config import BridgeConfig
    from bridge.db import Database

T = TypeVar("T")
EXIT_ERROR = 2
ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", help="The bridge's YAML configuration.", dir_okay=False),
]


def fail(message: str) -> typer.Exit:
    """Print `message` as the command's one error line; raise the returned exit."""
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(EXIT_ERROR)


def actor() -> Actor:
    """`cli:<login>`: who ran the command, as the audit log records it."""
    from bridge.admin.model import Actor

    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        login = "unknown"
    return Actor(f"cli:{login}")


def run_with_database(
    config_path: Path,
    work: Callable[[BridgeConfig, Database], Awaitable[T]],
    *,
    errors: tuple[type[Exception], ...] = (),
) -> T:
    """Load the configuration, open the database, run `work`, close the database.

    A bad configuration, an `AdminError`, a database problem or one of `errors` (whose text is
    meant for the operator) becomes `fail(...)`.
    """
    import asyncio

    from bridge.admin.model import AdminError
    from bridge.config import ConfigError, load_config
    from bridge.db import DatabaseError, open_database

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise fail(str(exc)) from None

    async def main() -> T:
        db = await open_database(config.effective_database_url)
        try:
            return await work(config, db)
        finally:
            await db.close()

    for_operator: tuple[type[Exception], ...] = (AdminError, DatabaseError, *errors)
    try:
        return asyncio.run(main())
    except for_operator as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot open the database: {exc.strerror or type(exc).__name__}") from None
