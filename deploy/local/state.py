"""Where the local demo lives and how another terminal finds it: its default ports, its state
directory and its state file. Standard library only, so that `caducee local status` and
`down` answer without loading the launcher (aiohttp, jinja2, cryptography, Synapse's admin
client) for what is one file read."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
A_PORT, B_PORT = 8481, 8482
STATE_FILE = "state.json"


def default_state_dir() -> Path:
    """Where the demo keeps its state (`CADUCEE_STATE_DIR`, else var/local in the checkout)."""
    configured = os.environ.get("CADUCEE_STATE_DIR")
    return Path(configured) if configured else REPO_ROOT / "var" / "local"


class StateError(Exception):
    """The state folder or file cannot be used; the message is meant for the user."""


def read_state(base_dir: Path) -> dict[str, Any] | None:
    """The state of a running local federation, or None when none runs from `base_dir`.

    Raises:
        StateError: the folder or its state file cannot be read (not a folder, a name too
            long, a file that is not the demo's).
    """
    path = base_dir / STATE_FILE
    try:
        if not path.exists():
            return None
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or "not a state file of the demo"
        raise StateError(f"cannot read the demo's state in {base_dir}: {reason}") from None
    if not isinstance(state, dict):
        raise StateError(f"cannot read the demo's state in {base_dir}: not a state file")
    return state


def prepare_state_dir(base_dir: Path) -> None:
    """Create the state folder (0700) or raise `StateError` saying why it cannot be used."""
    try:
        base_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = base_dir / ".writable"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise StateError(
            f"cannot use {base_dir} as the demo's state folder: {exc.strerror or exc}"
        ) from None


def stop_from_state(base_dir: Path) -> bool:
    """Ask a launcher running elsewhere to stop (SIGTERM to it). True if one was running."""
    state = read_state(base_dir)
    if state is None:
        return False
    try:
        os.kill(int(state["launcher_pid"]), signal.SIGTERM)
    except ProcessLookupError:
        # The launcher died without cleaning up: stop its homeservers directly.
        for homeserver in state["homeservers"]:
            if homeserver.get("pid"):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(int(homeserver["pid"]), signal.SIGTERM)
        (base_dir / STATE_FILE).unlink(missing_ok=True)
    return True


def started_here(pid: object, state_dir: Path) -> bool:
    """Whether `pid` runs and is a process the demo started from `state_dir`.

    A URL that answers is not enough: the process may have died and another taken its port
    (or its pid). Every demo process runs with a file of `state_dir` on its command line.
    """
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (not Linux): a live pid is all that can be checked
    return str(state_dir).encode() in command
