"""Pro Santé Connect in a production deployment: `.env` settings to Synapse and bridge config.

Off unless `CADUCEE_PSC_ENV` is set. Then:

- `CADUCEE_PSC_ENV`: `test` (PSC's "BAS" environment) or `production`;
- `CADUCEE_PSC_CLIENT_ID`: the client id PSC gave the federation;
- `CADUCEE_PSC_CLIENT_SECRET_FILE` (a file, relative to the `.env` folder, mode 0600: a file
  others can read is refused) or `CADUCEE_PSC_CLIENT_SECRET`: its secret;
- `CADUCEE_PSC_BRIDGE_TOKEN`: the homeserver's token at the bridge's admission endpoint
  (`openssl rand -hex 32`);
- `CADUCEE_PSC_ADMISSION`: `members` (default) or `register`;
- `CADUCEE_PSC_PROFESSIONS`: for `register`, profession codes, comma-separated (default `10`,
  doctors).

`caducee deploy render` then writes Synapse's `oidc_providers` entry (bridge.psc.endpoints),
the client secret and the bridge token as 0600 files beside homeserver.yaml (Synapse reads
them from there: homeserver.yaml holds neither), and the bridge's `psc:` section and token.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from bridge.psc.endpoints import ENDPOINTS, Environment, oidc_provider
from deploy.production.envfile import EnvFileError

SECRET_FILE = "psc-client-secret"  # noqa: S105 - a file name
TOKEN_FILE = "psc-bridge.token"  # noqa: S105 - a file name
TOKEN_NAME = "synapse-psc"  # noqa: S105 - the token's name in the bridge configuration
MIN_TOKEN = 32


@dataclass(frozen=True)
class PscDeployment:
    environment: Environment
    client_id: str
    admission: str
    professions: tuple[str, ...]
    client_secret: str = field(repr=False)
    bridge_token: str = field(repr=False)

    @classmethod
    def from_env(cls, values: dict[str, str], env_dir: Path | None) -> PscDeployment | None:
        environment = values.get("CADUCEE_PSC_ENV", "").strip()
        if not environment:
            return None
        problems: list[str] = []
        if environment not in get_args(Environment):
            problems.append(f"CADUCEE_PSC_ENV {environment!r} must be 'test' or 'production'")
        client_id = values.get("CADUCEE_PSC_CLIENT_ID", "").strip()
        if not client_id:
            problems.append("CADUCEE_PSC_CLIENT_ID is empty (the client id PSC gave you)")
        secret = _client_secret(values, env_dir, problems)
        token = values.get("CADUCEE_PSC_BRIDGE_TOKEN", "").strip()
        if len(token) < MIN_TOKEN:
            problems.append("CADUCEE_PSC_BRIDGE_TOKEN must be set (`openssl rand -hex 32`)")
        admission = values.get("CADUCEE_PSC_ADMISSION", "").strip() or "members"
        if admission not in ("members", "register"):
            problems.append(f"CADUCEE_PSC_ADMISSION {admission!r} must be 'members' or 'register'")
        raw = values.get("CADUCEE_PSC_PROFESSIONS", "").strip() or "10"
        professions = tuple(p.strip() for p in raw.split(",") if p.strip())
        if not professions or not all(re.fullmatch(r"[0-9]{1,3}", p) for p in professions):
            problems.append(f"CADUCEE_PSC_PROFESSIONS {raw!r}: profession codes like '10,40'")
        if problems:
            raise EnvFileError("; ".join(problems))
        return cls(environment, client_id, admission, professions, secret, token)  # type: ignore[arg-type]

    def synapse_provider(self, synapse_dir: Path, bridge_url: str) -> dict[str, Any]:
        """Synapse's `oidc_providers` entry; `synapse_dir` is where Synapse finds the files."""
        return oidc_provider(
            ENDPOINTS[self.environment],
            client_id=self.client_id,
            client_secret_path=str(synapse_dir / SECRET_FILE),
            bridge_url=bridge_url,
            bridge_token_file=str(synapse_dir / TOKEN_FILE),
        )

    def bridge_section(self) -> dict[str, Any]:
        return {
            "admission": self.admission,
            "professions": list(self.professions),
            "synapse_token": TOKEN_NAME,
        }

    def bridge_service_token(self) -> dict[str, str]:
        return {"name": TOKEN_NAME, "token": self.bridge_token}


def _client_secret(values: dict[str, str], env_dir: Path | None, problems: list[str]) -> str:
    path = values.get("CADUCEE_PSC_CLIENT_SECRET_FILE", "").strip()
    if path:
        file = Path(path) if Path(path).is_absolute() or env_dir is None else env_dir / path
        try:
            mode = file.stat().st_mode
            secret = file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            problems.append(f"CADUCEE_PSC_CLIENT_SECRET_FILE: cannot read {file}: {exc.strerror}")
            return ""
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            # Like every secret file Caducée reads or writes: its owner's only.
            problems.append(
                f"CADUCEE_PSC_CLIENT_SECRET_FILE: {file} is readable by others: `chmod 600 {file}`"
            )
            return ""
    else:
        secret = values.get("CADUCEE_PSC_CLIENT_SECRET", "").strip()
    if not secret:
        problems.append(
            "the PSC client secret is missing: set CADUCEE_PSC_CLIENT_SECRET_FILE (a file) "
            "or CADUCEE_PSC_CLIENT_SECRET"
        )
    return secret
