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


def read_state(base_dir: Path) -> dict[str, Any] | None:
    """The state of a running local federation, or None when none runs from `base_dir`."""
    path = base_dir / STATE_FILE
    if not path.exists():
        return None
    return dict(json.loads(path.read_text()))


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
