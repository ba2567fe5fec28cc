"""Where Pro Santé Connect answers, and the `oidc_providers` entry Synapse needs for it. Pure.

PSC publishes its discovery document at a non-standard path
(`<issuer>/.well-known/wallet-openid-configuration`), and its authorization endpoint lives on
another host (`wallet.…`) than the issuer (`auth.…`). Synapse's discovery only knows the
standard path, so the provider is written with `discover: false` and every endpoint spelled
out. The request Synapse then sends is PSC's: scope `openid scope_all`, `acr_values=eidas1`,
PKCE (S256) always, the client secret at the token endpoint (`client_secret_post`), and the
identity read from the userinfo endpoint (where PSC puts `SubjectNameID` and
`SubjectRefPro`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

Environment = Literal["test", "production"]
IDP_ID: Final = "psc"
IDP_NAME: Final = "Pro Santé Connect"
DISCOVERY_PATH: Final = "/.well-known/wallet-openid-configuration"
SCOPES: Final = ("openid", "scope_all")
ACR_VALUES: Final = "eidas1"


@dataclass(frozen=True, slots=True)
class PscEndpoints:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str

    @property
    def discovery_url(self) -> str:
        return self.issuer + DISCOVERY_PATH

    @classmethod
    def keycloak(cls, issuer: str, authorization_endpoint: str) -> PscEndpoints:
        """PSC is a Keycloak realm: token, userinfo and keys under `protocol/openid-connect`."""
        base = issuer.rstrip("/") + "/protocol/openid-connect"
        return cls(
            issuer=issuer.rstrip("/"),
            authorization_endpoint=authorization_endpoint,
            token_endpoint=f"{base}/token",
            userinfo_endpoint=f"{base}/userinfo",
            jwks_uri=f"{base}/certs",
        )


ENDPOINTS: Final[dict[Environment, PscEndpoints]] = {
    "test": PscEndpoints.keycloak(
        "https://auth.bas.psc.esante.gouv.fr/auth/realms/esante-wallet",
        "https://wallet.bas.psc.esante.gouv.fr/auth",
    ),
    "production": PscEndpoints.keycloak(
        "https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet",
        "https://wallet.esw.esante.gouv.fr/auth",
    ),
}


def oidc_provider(
    endpoints: PscEndpoints,
    *,
    client_id: str,
    client_secret_path: str,
    bridge_url: str,
    bridge_token_file: str,
) -> dict[str, Any]:
    """Synapse's `oidc_providers` entry for PSC, with Caducée's mapping provider."""
    return {
        "idp_id": IDP_ID,
        "idp_name": IDP_NAME,
        "idp_brand": "fr.esante.psc",
        "discover": False,
        "issuer": endpoints.issuer,
        "authorization_endpoint": endpoints.authorization_endpoint,
        "token_endpoint": endpoints.token_endpoint,
        "userinfo_endpoint": endpoints.userinfo_endpoint,
        "jwks_uri": endpoints.jwks_uri,
        "client_id": client_id,
        "client_secret_path": client_secret_path,
        "client_auth_method": "client_secret_post",
        "scopes": list(SCOPES),
        "additional_authorization_parameters": {"acr_values": ACR_VALUES},
        "pkce_method": "always",
        "user_profile_method": "userinfo_endpoint",
        # The mapping provider only returns an existing localpart for an account the bridge
        # linked to this RPPS (an onboarded practitioner); new ones get a free localpart.
        "allow_existing_users": True,
        "enable_registration": True,
        "user_mapping_provider": {
            "module": "bridge.psc.PscMappingProvider",
            "config": {"bridge_url": bridge_url, "bridge_token_file": bridge_token_file},
        },
    }
