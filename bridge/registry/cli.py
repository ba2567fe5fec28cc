"""`caducee admin member|homeserver|peer|key ...`: the federation registry from a shell.

The same handlers as the console, run on the bridge's machine with the bridge's
configuration; mounted under `caducee admin` by `bridge.admin.cli`. A problem is one line on
stderr, never a traceback (exit status 2: bad input or configuration; 1: not done).
The actor in the audit log is `cli:<login>`.
A running bridge sees the changes at once (same database); peers and homeservers follow
within their refresh intervals.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from bridge.admin.cli_support import ConfigOption, actor, fail, run_with_database
from bridge.common.exits import EXIT_USAGE, os_reason

if TYPE_CHECKING:  # imported by the commands that use them: `caducee --help` stays quick
    from bridge.config import BridgeConfig
    from bridge.db import Database
    from bridge.registry.model import Peer
    from bridge.registry.services import RegistryServices

T = TypeVar("T")

member_app = typer.Typer(help="Member organisations of the federation.", no_args_is_help=True)
homeserver_app = typer.Typer(help="Member homeservers (who may federate).", no_args_is_help=True)
peer_app = typer.Typer(help="Peer federations, pinned by key fingerprint.", no_args_is_help=True)
key_app = typer.Typer(help="The federation's signing key.", no_args_is_help=True)


def mount(app: typer.Typer) -> None:
    """Add the registry's command groups to `caducee admin`."""
    app.add_typer(member_app, name="member")
    app.add_typer(homeserver_app, name="homeserver")
    app.add_typer(peer_app, name="peer")
    app.add_typer(key_app, name="key")


def _run(config_path: Path, work: Callable[[RegistryServices], Awaitable[T]]) -> T:
    """Load the configuration, open the database and an HTTP session, run `work`."""
    import aiohttp

    from bridge.http.federation import federation_ssl_context
    from bridge.registry.keys import KeyFileError
    from bridge.registry.services import RegistryServices

    async def with_services(config: BridgeConfig, db: Database) -> T:
        connector = aiohttp.TCPConnector(ssl=federation_ssl_context(config.federation_ca_file))
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as http:
            return await work(RegistryServices.from_config(config, db, http))

    return run_with_database(config_path, with_services, errors=(KeyFileError,))


@member_app.command("add")
def member_add(
    name: Annotated[str, typer.Argument(help="The organisation's name.")], config: ConfigOption
) -> None:
    """Add a member organisation (then add its homeservers)."""
    from bridge.registry import handlers

    member = _run(config, lambda s: handlers.add_member(s, actor(), name))
    typer.echo(f"Member {member.name!r} added.")


@member_app.command("remove")
def member_remove(
    name: Annotated[str, typer.Argument(help="The organisation's name.")], config: ConfigOption
) -> None:
    """Remove a member and its homeservers: they are cut off from the federation."""
    from bridge.registry import handlers

    removed = _run(config, lambda s: handlers.remove_member(s, actor(), name))
    servers = ", ".join(removed.homeservers) or "none"
    typer.echo(f"Member {removed.name!r} removed, with its homeservers: {servers}.")


@member_app.command("list")
def member_list(config: ConfigOption) -> None:
    """Members and their homeservers."""
    from bridge.registry import handlers

    members = _run(config, handlers.list_members)
    if not members:
        typer.echo("No member yet (caducee admin member add NAME).")
    for member in members:
        typer.echo(f"{member.name}: {', '.join(member.homeservers) or '(no homeserver)'}")


@homeserver_app.command("add")
def homeserver_add(
    server_name: Annotated[str, typer.Argument(help="Matrix server name, e.g. hs.example.org")],
    member: Annotated[str, typer.Option("--member", "-m", help="The member that runs it.")],
    config: ConfigOption,
) -> None:
    """Let a member's homeserver into the federation (guards and bots follow within 30 seconds)."""
    from bridge.registry import handlers

    done = _run(config, lambda s: handlers.add_homeserver(s, actor(), server_name, member))
    typer.echo(f"{server_name.strip().lower()} added to {done.name!r}.")


@homeserver_app.command("remove")
def homeserver_remove(
    server_name: Annotated[str, typer.Argument(help="Matrix server name.")], config: ConfigOption
) -> None:
    """Cut a homeserver off the federation (guards and bots follow within 30 seconds)."""
    from bridge.registry import handlers

    owner = _run(config, lambda s: handlers.remove_homeserver(s, actor(), server_name))
    typer.echo(f"{server_name.strip().lower()} removed (it belonged to {owner!r}).")


def _peer_line(peer: Peer, now: datetime) -> str:
    name = peer.name or "(not verified yet)"
    if peer.version is None:
        state = "no manifest verified yet"
    else:
        state = f"version {peer.version}, {len(peer.homeservers)} homeserver(s)"
        if peer.stale(now):
            state += ", STALE (expired, no newer valid manifest: its homeservers are cut off)"
    problem = f"; last check: {peer.problem}" if peer.problem else ""
    return f"{name} <{peer.url}> key {peer.fingerprint}: {state}{problem}"


@peer_app.command("add")
def peer_add(
    url: Annotated[str, typer.Argument(help="The other federation's bridge URL.")],
    fingerprint: Annotated[
        str, typer.Argument(help="Its key fingerprint (`caducee admin key show` there).")
    ],
    config: ConfigOption,
) -> None:
    """Trust another federation: its homeservers may federate with ours."""
    from bridge.registry import handlers

    added = _run(config, lambda s: handlers.add_peer(s, actor(), url, fingerprint))
    typer.echo(f"Peer added: {_peer_line(added.peer, datetime.now(UTC))}")
    if not added.checked:
        typer.echo("Its manifest will be checked again at every refresh of the bridge.")


@peer_app.command("remove")
def peer_remove(
    peer: Annotated[str, typer.Argument(help="Its URL or federation name.")], config: ConfigOption
) -> None:
    """Stop trusting a federation: its homeservers are cut off within 30 seconds."""
    from bridge.registry import handlers

    removed = _run(config, lambda s: handlers.remove_peer(s, actor(), peer))
    typer.echo(f"Peer {removed.name or removed.url} removed.")


@peer_app.command("list")
def peer_list(config: ConfigOption) -> None:
    """Peer federations and the state of their manifests."""
    from bridge.registry import handlers

    peers = _run(config, handlers.list_peers)
    if not peers:
        typer.echo("No peer federation (caducee admin peer add URL FINGERPRINT).")
    now = datetime.now(UTC)
    for peer in peers:
        typer.echo(_peer_line(peer, now))


@key_app.command("show")
def key_show(config: ConfigOption) -> None:
    """The fingerprint to give other federations' admins (created on first use).

    The key is created only for a bridge whose database exists: with a wrong configuration
    (a data_dir that is not mounted), a new key would print a fingerprint no bridge signs with.
    """
    from bridge.config import ConfigError, load_config
    from bridge.registry.keys import KeyFileError, fingerprint_of, key_id, load_or_create

    try:
        loaded = load_config(config)
    except ConfigError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    key_file = loaded.effective_signing_key_file
    try:
        key_file.stat()
    except FileNotFoundError:  # first use: refused (one line) unless the database is there

        async def initialised(_config: BridgeConfig, _db: Database) -> None:
            return None

        run_with_database(config, initialised)
    except OSError:
        pass  # load_or_create says what is wrong with it
    try:
        key = load_or_create(key_file)
    except KeyFileError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot read or create the signing key {key_file}: {os_reason(exc)}") from None
    typer.echo(f"Federation: {loaded.effective_federation_name}")
    typer.echo(f"Key id: {key_id(key)}")
    typer.echo(f"Fingerprint: {fingerprint_of(key)}")
