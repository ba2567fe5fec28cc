"""`caducee deploy ...`: the operator's commands for a production deployment.

Errors are one clear line and a non-zero status (2: bad settings, 1: the operation failed),
never a traceback.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from deploy.production.backup import Manifest

deploy_app = typer.Typer(
    help="Production deployment: secrets, configuration rendering, proxy routes, backups.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

EXIT_BAD_SETTINGS = 2
EXIT_FAILED = 1

EnvOption = Annotated[
    Path,
    typer.Option("--env-file", help="The deployment's settings (.env).", dir_okay=False),
]


ManifestOption = Annotated[
    Path,
    typer.Option("--config", "-c", help="The rendered deployment.yaml.", dir_okay=False),
]


def _load_manifest(path: Path) -> Manifest:
    """The deployment's backup manifest; a missing or unreadable one is a usage error (2)."""
    from deploy.production.backup import BackupError, Manifest

    try:
        return Manifest.load(path)
    except BackupError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_SETTINGS) from None
    except UnicodeDecodeError:
        typer.echo(f"Error: {path}: cannot read: not UTF-8 text", err=True)
        raise typer.Exit(EXIT_BAD_SETTINGS) from None


class Layout(StrEnum):
    containers = "containers"
    host = "host"


@deploy_app.command("secrets")
def secrets_command(env_file: EnvOption = Path(".env")) -> None:
    """Fill every empty secret of the .env file (created from .env.example if absent)."""
    from deploy.production.envfile import EnvFileError, EnvWriteError, fill_secrets

    example = Path(__file__).resolve().parent / ".env.example"
    try:
        filled = fill_secrets(env_file, example)
    except EnvWriteError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    except EnvFileError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_SETTINGS) from None
    if filled:
        typer.echo(f"{env_file}: generated {', '.join(filled)} (mode 0600; never commit it)")
    else:
        typer.echo(f"{env_file}: every secret already has a value; nothing changed")


@deploy_app.command("render")
def render_command(
    out: Annotated[Path, typer.Option("--out", help="Where to write the configuration.")],
    env_file: EnvOption = Path(".env"),
    layout: Annotated[
        Layout, typer.Option("--layout", help="containers (compose) or host (systemd).")
    ] = Layout.containers,
) -> None:
    """Render Synapse (main + workers), bridge, bot, Element and backup configuration."""
    from dataclasses import replace

    from deploy.production.envfile import EnvFileError
    from deploy.production.render import prepare_data_dirs, registry_reminder, render
    from deploy.production.settings import Settings, Topology

    try:
        settings = Settings.load(env_file)
    except EnvFileError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_SETTINGS) from None
    base = Topology.containers() if layout is Layout.containers else Topology.host()
    topology = replace(base, config_dir=out)
    try:
        prepare_data_dirs(topology)
        rendered = render(settings, topology, out)
    except OSError as exc:
        typer.echo(f"Error: cannot write the configuration: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    typer.echo(f"Rendered {rendered.homeserver} and {len(rendered.workers)} worker files")
    typer.echo(f"  bridge: {rendered.bridge}  bot: {rendered.bot}  element: {rendered.element}")
    typer.echo(f"  backup manifest: {rendered.manifest}")
    for line in registry_reminder(settings, rendered.bridge):
        typer.echo(line)


@deploy_app.command("caddyfile")
def caddyfile_command(
    layout: Annotated[
        Layout, typer.Option("--layout", help="containers (compose) or host (systemd).")
    ] = Layout.containers,
) -> None:
    """Print the Caddyfile generated from the route table (deploy/production/Caddyfile)."""
    from deploy.production.caddy import caddyfile

    typer.echo(caddyfile(host_layout=layout is Layout.host), nl=False)


@deploy_app.command("backup")
def backup_command(
    config: ManifestOption,
    out: Annotated[Path, typer.Option("--out", help="Folder for the archive (0700).")],
    no_media: Annotated[
        bool,
        typer.Option(
            "--no-media",
            help="Leave Synapse's media store out (for operators who back it up separately).",
        ),
    ] = False,
) -> None:
    """Dump the databases; save the signing keys, the bot's crypto store, the media (0600)."""
    from deploy.production.backup import BackupError, backup

    manifest = _load_manifest(config)
    try:
        result = backup(manifest, out, include_media=not no_media)
    except BackupError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    except OSError as exc:
        typer.echo(f"Error: cannot write the backup to {out}: {exc.strerror or exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    for warning in result.warnings:
        typer.echo(f"Warning: {warning}", err=True)
    size = result.size / (1024 * 1024)
    typer.echo(
        f"Backup written to {result.archive} ({size:.1f} MiB, mode 0600: it holds the "
        "deployment's keys)"
    )


@deploy_app.command("restore")
def restore_command(
    archive: Annotated[Path, typer.Argument(help="A caducee-backup-*.tar.gz archive.")],
    config: ManifestOption,
) -> None:
    """Restore an archive into fresh databases and empty folders (services stopped)."""
    from deploy.production.backup import BackupError, restore

    manifest = _load_manifest(config)
    try:
        result = restore(archive, manifest)
    except BackupError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    except OSError as exc:
        typer.echo(f"Error: cannot restore {archive}: {exc.strerror or exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    for line in result.restored:
        typer.echo(f"restored {line}")
    for note in result.notes:
        typer.echo(f"Note: {note}")
