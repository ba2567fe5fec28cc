"""The `caducee` command: one entry point, each capability contributes its sub-commands.

Sub-applications are registered lazily-imported-free: each package owns its own typer app,
this module only assembles them so that `caducee --help` lists everything a user can do.
"""

from __future__ import annotations

import typer

from deploy.local.cli import local_app

app = typer.Typer(
    name="caducee",
    help="Caducée: encrypted messaging between practitioners over federated homeservers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(local_app, name="local")


def _register_optional() -> None:
    """Attach the sub-commands of the bridge and the bot when their packages provide them."""
    try:
        from bridge.cli import bridge_app, directory_app
    except ImportError:  # pragma: no cover - during early development only
        pass
    else:
        app.add_typer(directory_app, name="directory")
        app.add_typer(bridge_app, name="bridge")
    try:
        from bot.cli import bot_app
    except ImportError:  # pragma: no cover
        pass
    else:
        app.add_typer(bot_app, name="bot")


_register_optional()


def main() -> None:
    app()
