"""`caducee deploy ...`: the operator's commands for a production deployment.

Errors are one clear line and a non-zero status (2: bad settings, 1: the operation failed),
never a traceback.
"""

from __future__ import annotations

import os
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
    typer.Option(
        "--env-file",
        "--config",
        "-c",
        help="The deployment's settings (.env); -c/--config as for every other command.",
        dir_okay=False,
    ),
]


ManifestOption = Annotated[
    Path,
    typer.Option("--config", "-c", help="The rendered deployment.yaml.", dir_okay=False),
]


def _load_manifest(path: Path) -> Manifest:
    """The deployment's backup manifest; a missing or unreadable one is a usage error (2)."""
    from deploy.production.backup_model import BackupError, Manifest

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


DEFAULT_DATA_DIR = Path("/var/lib/caducee")


@deploy_app.command("render")
def render_command(
    out: Annotated[Path, typer.Option("--out", help="Where to write the configuration.")],
    env_file: EnvOption = Path(".env"),
    layout: Annotated[
        Layout, typer.Option("--layout", help="containers (compose) or host (systemd).")
    ] = Layout.containers,
    data_dir: Annotated[
        Path,
        typer.Option(
            "--data-dir",
            help="Where the services keep their data (synapse/, bridge/, bot/ under it), as "
            "the services see it. Render only names it; `deploy init` creates it.",
        ),
    ] = DEFAULT_DATA_DIR,
) -> None:
    """Render Synapse (main + workers), bridge, bot, Element and backup configuration.

    Writes under --out and nowhere else: the data folders and Synapse's signing key are
    created by `caducee deploy init`, where the deployment runs.
    """
    from dataclasses import replace

    from deploy.production.envfile import EnvFileError
    from deploy.production.render import registry_reminder, render
    from deploy.production.settings import Settings, Topology

    if not data_dir.is_absolute():
        typer.echo(f"Error: --data-dir {data_dir} must be an absolute path", err=True)
        raise typer.Exit(EXIT_BAD_SETTINGS)
    try:
        settings = Settings.load(env_file)
    except EnvFileError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_SETTINGS) from None
    base = Topology.containers() if layout is Layout.containers else Topology.host()
    topology = replace(
        base,
        config_dir=out,
        synapse_data_dir=data_dir / "synapse",
        bridge_data_dir=data_dir / "bridge",
        bot_data_dir=data_dir / "bot",
    )
    try:
        rendered = render(settings, topology, out)
    except OSError as exc:
        typer.echo(f"Error: cannot write the configuration: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    typer.echo(f"Rendered {rendered.homeserver} and {len(rendered.workers)} worker files")
    typer.echo(f"  bridge: {rendered.bridge}  bot: {rendered.bot}  element: {rendered.element}")
    typer.echo(f"  backup manifest: {rendered.manifest}")
    typer.echo(f"  data folders, signing key: caducee deploy init --config {rendered.manifest}")
    typer.echo(f"  the bot's account: caducee deploy bot-account --config {rendered.manifest}")
    for line in registry_reminder(settings, rendered.bridge):
        typer.echo(line)


@deploy_app.command("init")
def init_command(config: ManifestOption) -> None:
    """Create the data folders (0700) and Synapse's signing key (0600) if missing."""
    from deploy.production.datadirs import InitError, create, load_init

    try:
        folders, key = load_init(config)
    except InitError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_SETTINGS) from None
    try:
        made = create(folders, key)
    except OSError as exc:
        typer.echo(f"Error: cannot create the data folders: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    for line in made:
        typer.echo(f"created {line}")
    if not made:
        typer.echo("every data folder and the signing key exist already; nothing changed")


@deploy_app.command("bot-account")
def bot_account_command(config: ManifestOption) -> None:
    """Create the bot's account if missing and lift Synapse's per-account rate limits for it.

    Run once Synapse answers (compose's `bot-account` service, the bot's systemd unit). The
    bot stays an ordinary account; safe to run again.
    """
    import asyncio

    import aiohttp

    from bridge.synapse_admin import SynapseAdminError
    from deploy.production.bot_account import BotAccountError, ensure_bot_account, load_plan

    try:
        plan = load_plan(config)
    except BotAccountError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_SETTINGS) from None

    async def run() -> tuple[bool, bool]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            report = await ensure_bot_account(http, plan)
        return report.created, report.exempted

    try:
        created, exempted = asyncio.run(run())
    except BotAccountError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    except SynapseAdminError as exc:
        typer.echo(f"Error: Synapse at {plan.synapse_url} refused: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        typer.echo(f"Error: cannot reach Synapse at {plan.synapse_url}: {reason}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    bot = plan.bot_user_id
    typer.echo(f"{bot}: account {'created' if created else 'already there'} (not a server admin)")
    typer.echo(
        f"{bot}: rate limits {'lifted' if exempted else 'already lifted'} "
        "(Synapse's per-user override; sign-in and federation limits still apply)"
    )


@deploy_app.command("caddyfile")
def caddyfile_command(
    layout: Annotated[
        Layout, typer.Option("--layout", help="containers (compose) or host (systemd).")
    ] = Layout.containers,
) -> None:
    """Print the Caddyfile generated from the route table (deploy/production/Caddyfile)."""
    from deploy.production.caddy import caddyfile

    typer.echo(caddyfile(host_layout=layout is Layout.host), nl=False)


def _fail(exc: Exception) -> typer.Exit:
    from deploy.production.backup_model import BackupUsageError

    typer.echo(f"Error: {exc}", err=True)
    return typer.Exit(EXIT_BAD_SETTINGS if isinstance(exc, BackupUsageError) else EXIT_FAILED)


IdentityOption = Annotated[
    Path,
    typer.Option(
        "--identity",
        "-i",
        help="The operator's age identity file (AGE-SECRET-KEY-1...), kept apart from the server.",
        dir_okay=False,
    ),
]


@deploy_app.command("backup")
def backup_command(
    config: ManifestOption,
    out: Annotated[Path, typer.Option("--out", help="Folder for the archive (0700).")],
    recipient: Annotated[
        list[str] | None,
        typer.Option(
            "--recipient",
            "-r",
            help="age recipient (age1...) or a file of them; repeatable.",
            envvar="CADUCEE_BACKUP_RECIPIENT",
        ),
    ] = None,
    no_media: Annotated[
        bool,
        typer.Option(
            "--no-media",
            help="Leave Synapse's media store out (for operators who back it up separately).",
        ),
    ] = False,
) -> None:
    """Dump the databases; save the keys, the bot's crypto store, the media; encrypt (0600)."""
    from deploy.production.backup import backup
    from deploy.production.backup_archive import load_recipients
    from deploy.production.backup_model import BackupError

    manifest = _load_manifest(config)
    try:
        recipients = load_recipients(recipient or [])
        result = backup(manifest, out, recipients, include_media=not no_media)
    except BackupError as exc:
        raise _fail(exc) from None
    except OSError as exc:
        typer.echo(f"Error: cannot write the backup to {out}: {exc.strerror or exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    for warning in result.warnings:
        typer.echo(f"Warning: {warning}", err=True)
    size = result.size / (1024 * 1024)
    typer.echo(
        f"Backup written to {result.archive} ({size:.1f} MiB, mode 0600, encrypted to "
        f"{len(recipients)} recipient(s); check it with `caducee deploy verify`)"
    )


@deploy_app.command("backup-key")
def backup_key_command(
    out: Annotated[
        Path,
        typer.Option("--out", help="Where to write the identity (0600); not on the server."),
    ],
) -> None:
    """Generate an age identity for backups; print its recipient (the public part)."""
    import time

    from pyrage import x25519

    identity = x25519.Identity.generate()
    public = str(identity.to_public())
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    text = f"# created: {created}\n# public key: {public}\n{identity}\n"
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        typer.echo(f"Error: {out} exists already; it is never overwritten", err=True)
        raise typer.Exit(EXIT_BAD_SETTINGS) from None
    except OSError as exc:
        typer.echo(f"Error: cannot create {out}: {exc.strerror or exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    typer.echo(f"Identity written to {out} (0600): keep it off the server, with a copy offline.")
    typer.echo(f"Recipient (for CADUCEE_BACKUP_RECIPIENT / --recipient): {public}")


@deploy_app.command("verify")
def verify_command(
    archive: Annotated[Path, typer.Argument(help="A caducee-backup-*.tar.age archive.")],
    identity: IdentityOption,
) -> None:
    """Decrypt and check every member of an archive; changes nothing anywhere."""
    from deploy.production.backup_archive import load_identities, verify
    from deploy.production.backup_model import BackupError

    try:
        verified = verify(archive, load_identities(identity))
    except BackupError as exc:
        raise _fail(exc) from None
    contents = verified.contents
    files = sum(1 for entry in verified.members.values() if entry["type"] == "file")
    typer.echo(
        f"{archive}: intact ({files} files checked, taken {contents.get('created')}); "
        f"databases: {', '.join(contents['databases']) or 'none'}; "
        f"files: {', '.join(contents['paths']) or 'none'}; "
        f"media: {', '.join(contents['media']) or 'none'}"
    )


@deploy_app.command("restore")
def restore_command(
    archive: Annotated[Path, typer.Argument(help="A caducee-backup-*.tar.age archive.")],
    config: ManifestOption,
    identity: IdentityOption,
) -> None:
    """Verify, then restore into fresh databases and empty folders, all or nothing."""
    from deploy.production.backup_archive import load_identities
    from deploy.production.backup_model import BackupError
    from deploy.production.restore import restore

    manifest = _load_manifest(config)
    try:
        identities = load_identities(identity)
        result = restore(archive, manifest, identities)
    except BackupError as exc:
        raise _fail(exc) from None
    except OSError as exc:
        typer.echo(f"Error: cannot restore {archive}: {exc.strerror or exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    for line in result.restored:
        typer.echo(f"restored {line}")
    for note in result.notes:
        typer.echo(f"Note: {note}")
