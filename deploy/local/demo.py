"""The local demo: two medical federations that trust each other, one homeserver each."""

from __future__ import annotations

from deploy.local.federation import DemoAccount
from deploy.local.homeserver import HomeserverSpec
from deploy.local.state import A_PORT, B_PORT

BRIDGE_PORT_OFFSET = 12000  # each homeserver's bridge listens on its federation port + 12000


def demo_specs(ports: tuple[int, int] = (A_PORT, B_PORT)) -> list[HomeserverSpec]:
    """Homeserver A (a doctors' union) and B (a hospital group): two federations that peer.

    Each federation port `P` (the server name is `localhost:P`) comes with a client port
    `P + 10000`, a metrics port `P + 11000` and the bridge on `P + 12000`, all on loopback.
    """
    a_port, b_port = ports
    a, b = f"localhost:{a_port}", f"localhost:{b_port}"
    return [
        _spec("a", a_port, allowed=b),
        _spec("b", b_port, allowed=a),
    ]


def _spec(name: str, port: int, allowed: str) -> HomeserverSpec:
    """The guard follows its bridge's allow-list live (own members + verified peers) and
    keeps Synapse's federation whitelist equal to it, so nothing static is rendered: the
    registry, not a restart, decides. Until the bridge first answers, the static list (the
    other demo server) applies."""
    bridge = f"http://127.0.0.1:{port + BRIDGE_PORT_OFFSET}"
    return HomeserverSpec(
        name,
        port,
        port + 10000,
        port + 11000,
        allowed_servers=(allowed,),
        restrict_federation=False,
        extra_guard_config={
            "allowed_servers_url": f"{bridge}/_caducee/v1/federation/allowed_servers",
            "refresh_seconds": 2,
        },
    )


DEMO_ACCOUNTS = (
    DemoAccount("a", "dr.martin", "Dr Anne-Sophie Martin-Léger", "10009999995"),
    DemoAccount("a", "dr.dupont", "Dr Jean Dupont", "10008888884"),
    DemoAccount("b", "dr.fontaine", "Dr Claire Fontaine", "10007777773"),
    DemoAccount("b", "dr.benali", "Dr Karim Benali", "10006666662"),
)
