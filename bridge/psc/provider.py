"""Pro Santé Connect sign-in as a Synapse OIDC user-mapping provider.

Synapse runs the OpenID Connect exchange itself (PKCE, state and nonce, ID token signature,
userinfo); this module only decides *who* the practitioner becomes. Which hook does what
(Synapse 1.163, `synapse/handlers/oidc.py`):

- `get_remote_user_id` gives Synapse the stable external ID: the `SubjectNameID`
  (`8` + RPPS). Synapse remembers which account an external ID signed in to.
- `get_extra_attributes` is awaited at *every* sign-in, returning practitioners included,
  before Synapse completes it. Admission is decided here: the bridge is asked, and a refusal
  is raised as `MappingException`, whose text Synapse shows on its error page. So a
  practitioner struck off or locked since their last sign-in is refused at the next one.
- `map_user_attributes` is only called when Synapse does not know the external ID yet: it
  returns the localpart the bridge chose (an onboarded practitioner's existing account, which
  Synapse then attaches because the provider sets `allow_existing_users`; or a new, free one
  the bridge has already linked to the RPPS) and the register's display name.

The directory, the links and the account states live in the bridge's database, so the module
asks the bridge (`POST /_caducee/v1/psc/admit`, authenticated with a service token reserved for
it) rather than reading a database of its own: one writer for links and the audit log, the same
path on every Synapse worker, and nothing but the standard library and Synapse's module API
here. When the bridge cannot be reached, sign-in is refused (fail closed); password sign-in is
unaffected.

`MappingException` is the exception Synapse documents for mapping providers; it lives in
`synapse.handlers.sso` (not re-exported by `synapse.module_api`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from synapse.handlers.sso import MappingException
from synapse.module_api import ModuleApi

from bridge.psc import claims
from bridge.psc.config import PscMapperConfig
from bridge.psc.config import parse_config as _parse_config

logger = logging.getLogger(__name__)

ADMIT_PATH = "/_caducee/v1/psc/admit"
ANSWER_REUSE_SECONDS = 60.0
"""How long an admission answer serves the `map_user_attributes` calls of the same sign-in
(Synapse calls it once to look for an existing account, then again to register): the bridge is
asked, and the sign-in audited, once per sign-in. `get_extra_attributes` always asks afresh."""

_UNAVAILABLE = (
    "Connexion Pro Santé Connect momentanément indisponible : réessayez plus tard ou "
    "connectez-vous avec votre mot de passe. / Pro Santé Connect sign-in is unavailable right "
    "now: try again later or sign in with your password."
)
_BAD_IDENTITY = (
    "Connexion refusée : Pro Santé Connect n'a pas transmis d'identifiant national valide. / "
    "Sign-in refused: Pro Santé Connect sent no valid national identifier."
)


class PscMappingProvider:
    """Maps a Pro Santé Connect identity to the practitioner's Caducée account."""

    def __init__(self, config: PscMapperConfig, module_api: ModuleApi) -> None:
        self._config = config
        self._api = module_api
        self._answers: dict[str, tuple[float, dict[str, Any]]] = {}

    @staticmethod
    def parse_config(config: dict[str, Any]) -> PscMapperConfig:
        return _parse_config(config)

    def get_remote_user_id(self, userinfo: Any) -> str:
        try:
            return claims.national_identifier(userinfo.get("SubjectNameID"))
        except claims.ClaimsError:
            raise MappingException(_BAD_IDENTITY) from None

    async def get_extra_attributes(self, userinfo: Any, token: Any) -> dict[str, Any]:
        answer = await self._admit(userinfo, token)
        if answer.get("decision") != "admit":
            raise MappingException(str(answer.get("message") or _UNAVAILABLE))
        return {}

    async def map_user_attributes(
        self, userinfo: Any, token: Any, failures: int = 0
    ) -> dict[str, Any]:
        if failures:
            # The bridge checked the localpart was free and linked it; a clash means someone
            # took it meanwhile: refuse rather than guess another ID the bridge did not link.
            raise MappingException(_UNAVAILABLE)
        identifier = self.get_remote_user_id(userinfo)
        cached = self._answers.get(identifier)
        fresh = cached is not None and time.monotonic() - cached[0] < ANSWER_REUSE_SECONDS
        answer = cached[1] if fresh and cached is not None else await self._admit(userinfo, token)
        if answer.get("decision") != "admit" or not isinstance(answer.get("localpart"), str):
            raise MappingException(str(answer.get("message") or _UNAVAILABLE))
        return {
            "localpart": answer["localpart"],
            "display_name": answer.get("display_name"),
            "emails": [],
            "confirm_localpart": False,
        }

    async def _admit(self, userinfo: Any, token: Any) -> dict[str, Any]:
        try:
            who = claims.identity(userinfo, token)
        except claims.ClaimsError:
            raise MappingException(_BAD_IDENTITY) from None
        body = {
            "identifier": who.identifier,
            "acr": who.acr,
            "given_name": who.given_name,
            "family_name": who.family_name,
            "profession_codes": list(who.profession_codes),
            "server_name": self._api.server_name,
        }
        headers = {b"Authorization": [f"Bearer {self._config.bridge_token}".encode()]}
        try:
            answer = await self._api.http_client.post_json_get_json(
                self._config.bridge_url + ADMIT_PATH, body, headers=headers
            )
        except Exception as exc:  # any failure refuses the sign-in
            logger.warning("PSC sign-in: the bridge did not answer (%s)", type(exc).__name__)
            raise MappingException(_UNAVAILABLE) from None
        if not isinstance(answer, dict):
            raise MappingException(_UNAVAILABLE)
        if answer.get("decision") == "admit":
            self._prune()
            self._answers[who.identifier] = (time.monotonic(), answer)
        return answer

    def _prune(self) -> None:
        now = time.monotonic()
        for key, (at, _) in list(self._answers.items()):
            if now - at >= ANSWER_REUSE_SECONDS:
                del self._answers[key]
