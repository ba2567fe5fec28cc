"""`caducee bridge ...`: run the bridge service, check its configuration.

Operators see one clear line when something is wrong (exit status 2 for a bad configuration,
1 when the service cannot start), never a Python traceback.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bridge.common.exits import EXIT_FAILED, EXIT_USAGE, fail, os_reason

if TYPE_CHECKING:
    from bridge.config import BridgeConfig

bridge_app = typer.Typer(
    help="The federation's bridge service: directory API, registry and signed manifest, "
    "peering, web console (/admin/).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        help="The bridge's YAML configuration (start from bridge/example-config.yaml).",
        dir_okay=False,
    ),
]

EXIT_BAD_CONFIG = EXIT_USAGE
EXIT_CANNOT_START = EXIT_FAILED


def _load(path: Path) -> BridgeConfig:
    from bridge.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_CONFIG) from None


@bridge_app.command("run")
def run(config: ConfigOption) -> None:
    """Serve the bridge: directory API, registry and signed manifest, web console (`/admin/`).

    Runs until interrupted (Ctrl-C or SIGTERM).
    """
    settings = _load(config)
    import asyncio

    from bridge.http.server import StartupError, serve  # after the config: faster errors

    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(serve(settings))
    except StartupError as exc:
        if exc.missing is not None:
            from bridge.db import missing_message

            raise fail(missing_message(exc.missing, config), EXIT_CANNOT_START) from None
        raise fail(str(exc), EXIT_CANNOT_START) from None


@bridge_app.command("init")
def init(config: ConfigOption) -> None:
    """Create the bridge's database (or bring it to this version's schema); nothing else does.

    Run it once for a new deployment, and after restoring a backup. Safe to run again.
    """
    settings = _load(config)
    import asyncio

    from bridge.db import DatabaseError, open_database, safe_url
    from bridge.db import DatabaseMissingError as _Missing

    async def create() -> bool:
        try:
            found = await open_database(
                settings.effective_database_url, upgrade=False, create=False
            )
        except _Missing:
            existed = False
        else:
            await found.close()
            existed = True
        if settings.database_url is None:
            settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        db = await open_database(settings.effective_database_url, create=True)
        await db.close()
        return existed

    url = safe_url(settings.effective_database_url)
    try:
        existed = asyncio.run(create())
    except DatabaseError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot create the database {url}: {os_reason(exc)}") from None
    if existed:
        typer.echo(f"The bridge database {url} was already there; its schema is up to date.")
    else:
        typer.echo(f"Created the bridge database {url}.")


def _unusable_folder(folder: Path) -> str | None:
    """Why `folder` can never be a folder (a file in the way), or None when it is one or can
    be created. Missing is fine: `bridge init` creates it."""
    for part in (folder, *folder.parents):
        try:
            if part.is_dir():
                return None
            if part.exists():
                return f"cannot be a folder: {part} is a file"
        except OSError as exc:
            return f"cannot be used: {os_reason(exc)}"
    return None


@bridge_app.command("check-config")
def check_config(config: ConfigOption) -> None:
    """Validate a configuration file and summarise it (secrets are not shown)."""
    from sqlalchemy.engine import make_url

    settings = _load(config)
    unusable = _unusable_folder(settings.data_dir)
    if unusable is not None:
        typer.echo(f"Error: {config}: data_dir {settings.data_dir} {unusable}", err=True)
        raise typer.Exit(EXIT_BAD_CONFIG)
    typer.echo(f"{config}: OK")
    typer.echo(f"  server_name: {settings.server_name}")
    typer.echo(f"  homeserver_url: {settings.homeserver_url}")
    typer.echo(f"  listen: {settings.listen_host}:{settings.listen_port}")
    from bridge.common.database import sqlite_file_missing
    from bridge.db import DatabaseError, normalise_url

    database = make_url(settings.effective_database_url).render_as_string(hide_password=True)
    try:
        missing = sqlite_file_missing(normalise_url(settings.effective_database_url))
    except DatabaseError:  # a bad URL: `bridge init` and `run` explain it
        missing = None
    later = f" (not created yet: `caducee bridge init -c {config}`)" if missing else ""
    typer.echo(f"  database: {database}{later}")
    names = ", ".join(t.name for t in settings.service_tokens) or "(none)"
    typer.echo(f"  service tokens: {names}")
    typer.echo(f"  OpenID users from: {', '.join(sorted(settings.allowed_servers))}")
