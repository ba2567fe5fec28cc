"""The local demo: two medical federations that trust each other, one homeserver each."""

from __future__ import annotations

import os
from pathlib import Path

from deploy.local.federation import DemoAccount
from deploy.local.homeserver import REPO_ROOT, HomeserverSpec

A_PORT, B_PORT = 8481, 8482


def demo_specs(ports: tuple[int, int] = (A_PORT, B_PORT)) -> list[HomeserverSpec]:
    """Homeserver A (a doctors' union) and B (a hospital group), each allowing the other.

    Each federation port `P` (the server name is `localhost:P`) comes with a client port
    `P + 10000` and a metrics port `P + 11000`, all on loopback.
    """
    a_port, b_port = ports
    a, b = f"localhost:{a_port}", f"localhost:{b_port}"
    return [
        HomeserverSpec("a", a_port, a_port + 10000, a_port + 11000, allowed_servers=(b,)),
        HomeserverSpec("b", b_port, b_port + 10000, b_port + 11000, allowed_servers=(a,)),
    ]


DEMO_ACCOUNTS = (
    DemoAccount("a", "dr.martin", "Dr Anne-Sophie Martin-Léger", "10009999995"),
    DemoAccount("a", "dr.dupont", "Dr Jean Dupont", "10008888884"),
    DemoAccount("b", "dr.fontaine", "Dr Claire Fontaine", "10007777773"),
    DemoAccount("b", "dr.benali", "Dr Karim Benali", "10006666662"),
)


def default_state_dir() -> Path:
    """Where the demo keeps its state (`CADUCEE_STATE_DIR`, else var/local in the checkout)."""
    configured = os.environ.get("CADUCEE_STATE_DIR")
    return Path(configured) if configured else REPO_ROOT / "var" / "local"
