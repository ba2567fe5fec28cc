"""What every `caducee admin ...` command shares: the `--config` option, the actor recorded in
the audit log, and running one piece of work against the bridge's database.

A problem is one line on stderr, never a traceback: an admin at a shell must see what to fix
(the configuration, the database, the input), not where the code was. Exit status 2 for bad
input or configuration, 1 when the action could not be done (`bridge.common.exits`).
"""

from __future__ import annotations

import getpass
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from bridge.common import exits
from bridge.common.exits import EXIT_FAILED, EXIT_USAGE

if TYPE_CHECKING:  # imported when a command runs: `caducee --help` stays quick
    from bridge.admin.model import Actor
    from bridge.config import BridgeConfig
    from bridge.db import Database

T = TypeVar("T")
ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", help="The bridge's YAML configuration.", dir_okay=False),
]


def fail(message: str, status: int = EXIT_FAILED) -> typer.Exit:
    """Print `message` as the command's one error line; raise the returned exit."""
    return exits.fail(message, status)


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
    from bridge.db import DatabaseError, DatabaseMissingError, missing_message, open_database

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise fail(str(exc), EXIT_USAGE) from None

    async def main() -> T:
        db = await open_database(config.effective_database_url)
        try:
            return await work(config, db)
        finally:
            await db.close()

    for_operator: tuple[type[Exception], ...] = (DatabaseError, *errors)
    try:
        return asyncio.run(main())
    except DatabaseMissingError as exc:
        raise fail(missing_message(exc.what, config_path)) from None
    except AdminError as exc:  # bad input is a usage error; the rest, a failed operation
        raise fail(str(exc), EXIT_USAGE if exc.kind == "invalid" else EXIT_FAILED) from None
    except for_operator as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot open the database: {exc.strerror or type(exc).__name__}") from None
