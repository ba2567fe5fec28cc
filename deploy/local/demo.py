"""The local demo: two medical federations that trust each other, one homeserver each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bridge.psc.endpoints import oidc_provider
from deploy.local.federation import DemoAccount
from deploy.local.homeserver import HomeserverSpec
from deploy.local.psc_standin import Identity, PscStandIn
from deploy.local.services import service_token
from deploy.local.state import A_PORT, B_PORT

BRIDGE_PORT_OFFSET = 12000  # each homeserver's bridge listens on its federation port + 12000
PSC_PORT_OFFSET = 13000  # the stand-in Pro Santé Connect: homeserver A's port + 13000
PSC_TOKEN_NAME = "synapse-psc"  # noqa: S105 - the token's name, not its value
PSC_ADMISSION = {"a": "register", "b": "members"}
"""A (a doctors' union) lets every doctor of the register in; B (a hospital group) only its
members (the demo accounts, onboarded)."""


def demo_specs(
    ports: tuple[int, int] = (A_PORT, B_PORT), psc: PscStandIn | None = None
) -> list[HomeserverSpec]:
    """Homeserver A (a doctors' union) and B (a hospital group): two federations that peer.

    Each federation port `P` (the server name is `localhost:P`) comes with a client port
    `P + 10000`, a metrics port `P + 11000` and the bridge on `P + 12000`, all on loopback.
    """
    a_port, b_port = ports
    a, b = f"localhost:{a_port}", f"localhost:{b_port}"
    return [
        _spec("a", a_port, allowed=b, psc=psc),
        _spec("b", b_port, allowed=a, psc=psc),
    ]


def demo_psc(state_dir: Path, ports: tuple[int, int] = (A_PORT, B_PORT)) -> PscStandIn:
    """The stand-in PSC both demo homeservers send their users to (not started yet)."""
    callbacks = [f"http://127.0.0.1:{p + 10000}/_synapse/client/oidc/callback" for p in ports]
    return PscStandIn(
        state_dir / "psc", ports[0] + PSC_PORT_OFFSET, callbacks, list(DEMO_PSC_IDENTITIES)
    )


def psc_token_file(state_dir: Path, name: str) -> Path:
    """The homeserver's token at its bridge's PSC admission endpoint (created once, 0600)."""
    directory = state_dir / f"bridge-{name}"
    service_token(directory, PSC_TOKEN_NAME)
    return directory / f"{PSC_TOKEN_NAME}.token"


def psc_status(psc: PscStandIn, name: str) -> dict[str, Any]:
    """What `caducee local status --json` shows under `psc` for one homeserver."""
    return {
        "url": psc.issuer,
        "discovery_url": psc.endpoints.discovery_url,
        "admission": PSC_ADMISSION[name],
        "identities": [
            {
                "subject_name_id": who.subject,
                "rpps": who.rpps,
                "name": f"{who.given_name} {who.family_name}",
                "profession_code": who.profession_code,
            }
            for who in psc.identities
        ],
    }


def _spec(name: str, port: int, allowed: str, psc: PscStandIn | None = None) -> HomeserverSpec:
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
        login_address_relaxed=True,
        oidc_providers=()
        if psc is None
        else (
            oidc_provider(
                psc.endpoints,
                client_id=psc.client_id,
                client_secret_path=str(psc.client_secret_path),
                bridge_url=bridge,
                bridge_token_file=str(psc_token_file(psc.data_dir.parent, name)),
            ),
        ),
    )


DEMO_ACCOUNTS = (
    DemoAccount("a", "dr.martin", "Dr Anne-Sophie Martin-Léger", "10009999995"),
    DemoAccount("a", "dr.dupont", "Dr Jean Dupont", "10008888884"),
    DemoAccount("b", "dr.fontaine", "Dr Claire Fontaine", "10007777773"),
    DemoAccount("b", "dr.benali", "Dr Karim Benali", "10006666662"),
)

DEMO_PSC_IDENTITIES = (
    # The demo accounts: they land on their existing (onboarded) accounts.
    Identity("10009999995", "Anne-Sophie", "MARTIN-LÉGER"),
    Identity("10008888884", "Jean", "DUPONT"),
    Identity("10007777773", "Claire", "FONTAINE"),
    Identity("10006666662", "Karim", "BENALI"),
    # Doctors of the demo register with no account yet: A opens one, B refuses (members only).
    Identity("10001156768", "Bruno", "MOULIN"),
    Identity("10001156917", "Sophie", "RENAULT"),
    # Refused everywhere: a nurse (profession 60, ADELI) and an identifier nobody knows.
    Identity("026008284", "Géraldine", "PEREZ", "60"),
    Identity("10000000001", "Test", "INCONNU"),
)
