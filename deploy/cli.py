"""The `caducee` command: one entry point, each capability contributes its sub-commands.

Each package owns its typer app; this module only assembles them so that `caducee --help`
lists everything a user can do.
"""

from __future__ import annotations

import typer

from deploy.local.cli import local_app
from deploy.production.cli import deploy_app

app = typer.Typer(
    name="caducee",
    help="Caducée: encrypted messaging between practitioners over federated homeservers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(local_app, name="local")
app.add_typer(deploy_app, name="deploy")


def main() -> None:
    app()
