"""`caducee local ...`: start, stop and inspect the local demo federation."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from bridge.common.exits import EXIT_USAGE, fail
from deploy.local.state import (
    A_PORT,
    B_PORT,
    StateError,
    default_state_dir,
    prepare_state_dir,
    started_here,
    stop_from_state,
)
from deploy.local.state import read_state as _read_state

local_app = typer.Typer(help="Run the local demo federation (two homeservers on loopback).")
console = Console()


StateDir = Annotated[
    Path | None,
    typer.Option("--state-dir", help="State directory (default: var/local or CADUCEE_STATE_DIR)."),
]


def read_state(directory: Path) -> dict[str, Any] | None:
    """The demo's state, or a usage error (2) when the state folder cannot be read."""
    try:
        return _read_state(directory)
    except StateError as exc:
        raise fail(str(exc), EXIT_USAGE) from None


def _launcher_alive(state: dict[str, Any]) -> bool:
    try:
        os.kill(int(state["launcher_pid"]), 0)
    except (ProcessLookupError, KeyError, ValueError):
        return False
    return True


def _print_summary(state: dict[str, Any]) -> None:
    from rich.table import Table

    for homeserver in state["homeservers"]:
        table = Table(title=f"Homeserver {homeserver['server_name']}", title_justify="left")
        table.add_column("account")
        table.add_column("password")
        table.add_column("who")
        admin = homeserver["admin"]
        table.add_row(admin["user_id"], admin["password"], "server admin")
        for account in homeserver["demo_accounts"]:
            table.add_row(account["user_id"], account["password"], account["display_name"])
        console.print(table)
        console.print(f"  client URL: [bold]{homeserver['client_url']}[/bold]")
        if homeserver.get("bot_user_id"):
            console.print(
                f"  bot: [bold]{homeserver['bot_user_id']}[/bold] (start a DM, send !help)"
                f"   bridge: {homeserver['bridge_url']}"
            )
        if homeserver.get("psc"):
            psc = homeserver["psc"]
            console.print(
                f"  Pro Santé Connect (demo stand-in, admission: {psc['admission']}): "
                "'Sign in with Pro Santé Connect' in Element, then pick a practitioner; "
                f"{len(psc['identities'])} demo identities in `caducee local status --json`"
            )
        if homeserver.get("console_url"):
            console.print(
                f"  admin console: [bold]{homeserver['console_url']}[/bold] (sign in as "
                f"{admin['user_id']} with its password above)"
            )
    console.print(
        "Sign in from Element: choose 'Edit' next to the homeserver, enter the client URL "
        "above as a custom homeserver, then an account and its password."
    )
    console.print("Press Ctrl-C to stop everything.")


async def _run_foreground(state_dir: Path, ports: tuple[int, int], with_services: bool) -> None:
    import asyncio

    from deploy.local.demo import DEMO_ACCOUNTS, demo_psc, demo_specs, psc_status
    from deploy.local.federation import LocalFederation
    from deploy.local.psc_standin import installation_problem
    from deploy.local.stack import DemoStack

    # The stand-in Pro Santé Connect runs with the bridges (it asks them who may sign in).
    psc = demo_psc(state_dir, ports) if with_services else None
    if psc is not None and installation_problem() is not None:
        console.print(f"Pro Santé Connect stand-in not available: {installation_problem()}")
        psc = None
    federation = LocalFederation(state_dir, demo_specs(ports, psc))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    console.print("Starting the local federation ...")
    if psc is not None:
        psc.launch()
    try:
        await federation.start()
    except BaseException:
        if psc is not None:
            psc.stop()
        raise
    stack = DemoStack(federation, psc)
    try:
        await federation.ensure_demo_accounts(DEMO_ACCOUNTS)
        if with_services:
            console.print("Starting the bridges and bots ...")
            await stack.start()
            for name in federation.homeservers:
                federation.services[name] = {
                    "bridge_url": stack.bridge_urls[name],
                    "bot_user_id": stack.bot_ids[name],
                    **({} if psc is None else {"psc": psc_status(psc, name)}),
                    "console_url": stack.bridge_urls[name] + "/admin/",
                    **stack.pids[name],
                }
            federation.write_state()
        _print_summary(federation.state())
        await stop.wait()
        console.print("Stopping ...")
    finally:
        stack.stop()
        federation.stop()
    console.print("Stopped.")


@local_app.command("up")
def up(
    state_dir: StateDir = None,
    ports: Annotated[
        tuple[int, int],
        typer.Option("--ports", help="Federation ports of homeservers A and B."),
    ] = (A_PORT, B_PORT),
    services: Annotated[
        bool,
        typer.Option("--services/--no-services", help="Also run each homeserver's bridge and bot."),
    ] = True,
) -> None:
    """Start the demo federation in the foreground; Ctrl-C stops it. State is reused."""
    directory = state_dir or default_state_dir()
    state = read_state(directory)
    try:
        prepare_state_dir(directory)
    except StateError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    if state is not None and _launcher_alive(state):
        raise fail(
            f"the local federation already runs (launcher pid {state['launcher_pid']}); "
            "use `caducee local status` or `caducee local down`"
        )
    import asyncio

    try:
        asyncio.run(_run_foreground(directory, ports, services))
    except (RuntimeError, TimeoutError) as error:
        raise fail(f"could not start the local federation: {error}") from None


@local_app.command("down")
def down(state_dir: StateDir = None) -> None:
    """Stop a local federation started by `caducee local up` in another terminal."""
    directory = state_dir or default_state_dir()
    read_state(directory)  # an unusable folder is reported, not taken for "nothing runs"
    if stop_from_state(directory):
        console.print("Asked the local federation to stop.")
    else:
        console.print("No local federation is running.")


async def _alive(client_urls: list[str]) -> list[bool]:
    import asyncio

    import aiohttp

    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def ping(url: str) -> bool:
            try:
                async with http.get(f"{url}/_matrix/client/versions") as response:
                    return response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                return False

        return list(await asyncio.gather(*(ping(url) for url in client_urls)))


@local_app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    state_dir: StateDir = None,
) -> None:
    """Show what runs: homeservers, client URLs, admin and demo accounts (exit 1 if down)."""
    state = read_state(state_dir or default_state_dir())
    if state is None or not _launcher_alive(state):
        if as_json:
            print(json.dumps({"running": False, "homeservers": []}))
        else:
            console.print("No local federation is running. Start it with `make up`.")
        raise typer.Exit(1)
    import asyncio

    directory = Path(state.get("state_dir") or state_dir or default_state_dir())
    answers = asyncio.run(_alive([hs["client_url"] for hs in state["homeservers"]]))
    for homeserver, answered in zip(state["homeservers"], answers, strict=True):
        # Its URL answers AND the process the demo started still runs (not another one that
        # took the port after it died).
        homeserver["alive"] = answered and started_here(homeserver.get("pid"), directory)
        for service in ("bridge", "bot"):
            if f"{service}_pid" in homeserver:
                alive = started_here(homeserver[f"{service}_pid"], directory)
                homeserver[f"{service}_alive"] = alive
    state["running"] = all(
        hs["alive"] and hs.get("bridge_alive", True) and hs.get("bot_alive", True)
        for hs in state["homeservers"]
    )
    if as_json:
        json.dump(state, sys.stdout, indent=2)
        print()
    else:
        _print_summary(state)
        for hs in state["homeservers"]:
            for what, key in (
                ("homeserver", "alive"),
                ("bridge", "bridge_alive"),
                ("bot", "bot_alive"),
            ):
                if hs.get(key) is False:
                    console.print(f"[red]{what} of {hs['server_name']} is not running[/red]")
    if not state["running"]:
        raise typer.Exit(1)
