"""The stand-in Pro Santé Connect of the local demo and the tests (deploy/local/psc/server.mjs).

It is the `oidc-provider` library, a certified OpenID Connect provider, configured as PSC
answers (issuer path, discovery at `.well-known/wallet-openid-configuration`, scope
`openid scope_all`, `SubjectNameID`/`SubjectRefPro` in userinfo, acr `eidas1`, PKCE S256),
on loopback. Its sign-in page lists the demo identities; no password (the e-CPS app's part).
"""

from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bridge.psc.endpoints import DISCOVERY_PATH, PscEndpoints
from deploy.local.ca import write_private
from deploy.local.process import ManagedProcess
from deploy.local.state import REPO_ROOT

STANDIN_DIR = REPO_ROOT / "deploy" / "local" / "psc"
INSTALL_HINT = "run `npm ci --prefix deploy/local/psc` (part of `make install`)"
CLIENT_ID = "caducee-demo"


@dataclass(frozen=True, slots=True)
class Identity:
    """A demo practitioner as PSC would vouch for them."""

    rpps: str
    given_name: str
    family_name: str
    profession_code: str = "10"

    @property
    def subject(self) -> str:
        """`SubjectNameID`: 8 + RPPS (11 digits), or 0 + ADELI (9 characters)."""
        return ("8" if len(self.rpps) == 11 else "0") + self.rpps

    def as_json(self) -> dict[str, str]:
        return {
            "subject": self.subject,
            "given_name": self.given_name,
            "family_name": self.family_name,
            "profession_code": self.profession_code,
        }


def installation_problem() -> str | None:
    if shutil.which("node") is None:
        return "node is not on PATH"
    if not (STANDIN_DIR / "node_modules" / "oidc-provider" / "package.json").is_file():
        return f"deploy/local/psc/node_modules is missing: {INSTALL_HINT}"
    return None


class PscStandIn:
    """One stand-in provider process with its client (the homeservers' redirect URIs)."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        redirect_uris: list[str],
        identities: list[Identity],
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.identities = identities
        self.issuer = f"http://127.0.0.1:{port}/auth/realms/esante-wallet"
        self.endpoints = PscEndpoints.keycloak(
            self.issuer, self.issuer + "/protocol/openid-connect/auth"
        )
        data_dir.mkdir(parents=True, exist_ok=True)
        secret_path = data_dir / "client-secret"
        if not secret_path.exists():
            write_private(secret_path, secrets.token_urlsafe(32).encode())
        self.client_secret_path = secret_path
        self._config_path = data_dir / "standin.json"
        config: dict[str, Any] = {
            "port": port,
            "client_id": CLIENT_ID,
            "client_secret": secret_path.read_text().strip(),
            "redirect_uris": redirect_uris,
            "identities": [who.as_json() for who in identities],
        }
        write_private(self._config_path, json.dumps(config).encode())
        self._process = ManagedProcess(
            "stand-in Pro Santé Connect",
            ["node", str(STANDIN_DIR / "server.mjs"), str(self._config_path)],
            data_dir / "standin.log",
            self.issuer + DISCOVERY_PATH,
            cwd=STANDIN_DIR,
        )

    @property
    def client_id(self) -> str:
        return CLIENT_ID

    def launch(self) -> None:
        problem = installation_problem()
        if problem is not None:
            raise RuntimeError(f"the stand-in Pro Santé Connect cannot start: {problem}")
        self._process.launch()

    async def wait_ready(self, http: aiohttp.ClientSession, timeout: float = 30.0) -> None:
        await self._process.wait_ready(http, timeout)

    async def forge(self, http: aiohttp.ClientSession, mode: str) -> None:
        """Tests: make the token endpoint forge its ID token (`rogue_key`, `nonce`, `none`)."""
        url = f"http://127.0.0.1:{self.port}/_standin/forge"
        async with http.post(url, json={"mode": mode}) as response:
            response.raise_for_status()

    def stop(self) -> None:
        self._process.stop()
