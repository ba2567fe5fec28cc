"""The `caducee` command: one entry point, each capability contributes its sub-commands.

Each package owns its typer app; this module only assembles them so that `caducee --help`
lists everything a user can do.
"""

from __future__ import annotations

import typer

from bot.cli import bot_app
from bridge.admin.cli import admin_app
from bridge.cli import bridge_app
from bridge.directory.cli import directory_app
from deploy.local.cli import local_app
from deploy.production.cli import deploy_app

app = typer.Typer(
    name="caducee",
    help="Caducée: encrypted messaging between practitioners over federated homeservers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(local_app, name="local")
app.add_typer(directory_app, name="directory")
app.add_typer(bridge_app, name="bridge")
app.add_typer(admin_app, name="admin")
app.add_typer(bot_app, name="bot")
app.add_typer(deploy_app, name="deploy")


def main() -> None:
    app()
