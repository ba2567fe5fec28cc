"""The `caducee` command: one entry point, each capability contributes its sub-commands.

Each package owns its typer app; this module only assembles them so that `caducee --help`
lists everything a user can do. Exit statuses and the error form are described in
`bridge.common.exits` and the README: 0 done, 1 the operation failed, 2 usage or configuration.
"""

from __future__ import annotations

import logging
from typing import Any

import typer
from typer.core import TyperGroup

from bot.cli import bot_app
from bridge.admin.cli import admin_app
from bridge.cli import bridge_app
from bridge.common.exits import EXIT_FAILED, first_non_utf8, usage_error
from bridge.directory.cli import directory_app
from deploy.local.cli import local_app
from deploy.production.cli import deploy_app

logger = logging.getLogger(__name__)


class _CaduceeGroup(TyperGroup):
    """Refuses, before any command runs, an argument that is not valid UTF-8 (a byte from a
    file name in another encoding, say): every path, URL and identifier reaches the commands
    as text they can print, store and send."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        bad = first_non_utf8(args)
        if bad is not None:
            raise usage_error(f"{bad!r} is not valid UTF-8 text")
        return super().parse_args(ctx, args)


app = typer.Typer(
    name="caducee",
    help="Caducée: encrypted messaging between practitioners over federated homeservers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=_CaduceeGroup,
)
app.add_typer(local_app, name="local")
app.add_typer(directory_app, name="directory")
app.add_typer(bridge_app, name="bridge")
app.add_typer(admin_app, name="admin")
app.add_typer(bot_app, name="bot")
app.add_typer(deploy_app, name="deploy")


def main() -> None:
    """Run the command; a failure no command foresaw is still one line, not a traceback."""
    try:
        app()
    except Exception as exc:  # a bug: say so plainly, keep the details for the log
        logger.debug("unexpected failure", exc_info=True)
        typer.echo(f"Error: unexpected failure: {type(exc).__name__}: {exc}", err=True)
        raise SystemExit(EXIT_FAILED) from None
