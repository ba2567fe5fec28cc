"""`caducee admin ...`: onboard and offboard practitioners, give a password link, lock departed
ones, read the audit log.

The same handlers as the web console, run from a shell on the bridge's machine with the
bridge's configuration. A problem is one line on stderr, never a traceback: exit status 2 for
bad input or configuration, 1 when the action could not be done (unknown practitioner,
conflict, homeserver or database unavailable). The actor
recorded in the audit log is `cli:<login>`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from bridge.admin.cli_support import ConfigOption, actor, fail, run_with_database
from bridge.common.exits import EXIT_USAGE, os_reason
from bridge.registry.cli import mount as mount_registry

if TYPE_CHECKING:  # imported by the commands that use them: `caducee --help` stays quick
    from bridge.admin import audit
    from bridge.admin.bulk_handler import BulkReport
    from bridge.admin.services import AdminServices
    from bridge.config import BridgeConfig
    from bridge.db import Database


admin_app = typer.Typer(
    help="Federation admin: practitioners' accounts, member organisations and their "
    "homeservers, peer federations, the federation's signing key, and the audit log.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
mount_registry(admin_app)  # member, homeserver, peer, key (bridge.registry.cli)

T = TypeVar("T")


def _run(config_path: Path, work: Callable[[AdminServices], Awaitable[T]]) -> T:
    """Load the configuration, open the database and the homeservers' clients, run `work`."""
    import aiohttp

    from bridge.admin.services import AdminServices

    async def with_services(config: BridgeConfig, db: Database) -> T:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as http:
            return await work(AdminServices.from_config(config, db, http))

    return run_with_database(config_path, with_services)


@admin_app.command("onboard")
def onboard_command(
    rpps: Annotated[str, typer.Argument(help="RPPS (or ADELI) number, as in the directory.")],
    config: ConfigOption,
    homeserver: Annotated[
        str | None,
        typer.Option(help="Server name of the member homeserver (default: the bridge's own)."),
    ] = None,
    visible: Annotated[
        bool, typer.Option(help="Publish the Matrix ID in the federation's directory.")
    ] = False,
) -> None:
    """Open an account for a practitioner of the directory and print their activation link."""
    from bridge.admin.handlers import onboard

    done = _run(
        config, lambda s: onboard(s, actor(), rpps, server_name=homeserver, visible=visible)
    )
    typer.echo(f"Onboarded {done.display_name} (RPPS {done.rpps}) as {done.matrix_id}")
    typer.echo(f"Activation link (one use, until {done.expires_at:%Y-%m-%d %H:%M} UTC):")
    typer.echo(f"  {done.activation_url}")
    typer.echo("Give it to the practitioner only; it is shown once and never stored.")


@admin_app.command("offboard")
def offboard_command(
    matrix_id: Annotated[str, typer.Argument(help="The account's Matrix ID (@name:server).")],
    config: ConfigOption,
) -> None:
    """Deactivate an account: it leaves every room, and its directory link is removed."""
    from bridge.admin.handlers import offboard

    done = _run(config, lambda s: offboard(s, actor(), matrix_id))
    linked = f" (RPPS {done.rpps} unlinked)" if done.rpps else ""
    typer.echo(f"Deactivated {done.matrix_id}{linked}; removed from {done.rooms} room(s).")


@admin_app.command("password-link")
def password_link_command(
    matrix_id: Annotated[str, typer.Argument(help="The practitioner's Matrix ID (@name:server).")],
    config: ConfigOption,
) -> None:
    """Print a new one-time link where a practitioner chooses a password (for Element X)."""
    from bridge.admin.password_link import password_link

    done = _run(config, lambda s: password_link(s, actor(), matrix_id))
    typer.echo(
        f"Password link for {done.matrix_id} (RPPS {done.rpps}), one use, until "
        f"{done.expires_at:%Y-%m-%d %H:%M} UTC (earlier links no longer work):"
    )
    typer.echo(f"  {done.activation_url}")
    typer.echo("Give it to the practitioner only; it is shown once and never stored.")


def _print_bulk(report: BulkReport) -> None:
    for error in report.errors:
        typer.echo(f"  {error}", err=True)
    if report.errors:
        return
    if report.dry_run:
        for line in report.planned:
            typer.echo(f"line {line.line}: {line.rpps} {line.display_name} -> {line.matrix_id}")
        typer.echo(f"Dry run: {len(report.planned)} practitioner(s) would be onboarded.")
        return
    for number, done in report.onboarded:
        typer.echo(f"line {number}: {done.matrix_id} {done.activation_url}")
    typer.echo(f"{len(report.onboarded)} practitioner(s) onboarded.")


@admin_app.command("onboard-csv")
def onboard_csv_command(
    file: Annotated[Path, typer.Argument(help="CSV: columns rpps[,homeserver].", dir_okay=False)],
    config: ConfigOption,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check only; change nothing.")] = False,
) -> None:
    """Onboard every practitioner of a CSV file; any bad line and nobody is onboarded."""
    from bridge.admin.bulk_handler import onboard_file

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {file}: {os_reason(exc)}", EXIT_USAGE) from None
    report = _run(
        config, lambda s: onboard_file(s, actor(), text, dry_run=dry_run, source=file.name)
    )
    _print_bulk(report)
    if report.errors:
        raise fail(f"{len(report.errors)} problem(s) in {file}; nothing was changed", EXIT_USAGE)
    if report.stopped_at is not None:
        raise fail(f"stopped at {report.stopped_at}")


@admin_app.command("lock-departed")
def lock_departed_command(
    config: ConfigOption,
    allow_shrink: Annotated[
        bool,
        typer.Option(
            "--allow-shrink",
            help="Confirm locking more than 5 % of the onboarded practitioners at once.",
        ),
    ] = False,
) -> None:
    """Lock the accounts of practitioners no longer in the register, and list them all."""
    from bridge.admin.departed import lock_departed
    from bridge.directory.generations import DEFAULT_MAX_SHRINK

    share = None if allow_shrink else DEFAULT_MAX_SHRINK
    departed = _run(config, lambda s: lock_departed(s, actor(), max_share=share))
    if not departed:
        typer.echo("Every onboarded practitioner is still in the register.")
        return
    problems = 0
    for item in departed:
        status: str = "locked now" if item.locked_now else item.state
        if item.problem:
            status, problems = f"NOT locked: {item.problem}", problems + 1
        typer.echo(f"{item.rpps} {item.name or '?'} {item.matrix_id}: {status}")
    if problems:
        raise fail(f"{problems} account(s) could not be locked; run again later")


@admin_app.command("audit")
def audit_command(
    config: ConfigOption,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many entries.")] = 50,
) -> None:
    """The latest entries of the audit log, newest first."""
    from bridge.admin import audit

    async def read(services: AdminServices) -> list[audit.AuditEntry]:
        async with services.db.sessions() as session:
            return await audit.recent(session, limit=limit)

    for entry in _run(config, read):
        detail = entry.detail_text()
        typer.echo(
            f"{entry.at:%Y-%m-%d %H:%M:%S} {entry.actor} {entry.action} {entry.target or '-'} "
            f"{entry.outcome}{' ' + detail if detail else ''}"
        )
