"""The `psc:` section of the bridge's configuration: who may sign in with Pro Santé Connect.

    psc:
      admission: register          # or: members
      professions: ["10"]          # register rule: profession codes admitted (10 = doctors)
      members: []                  # members rule: RPPS numbers an admin lists before onboarding
      synapse_token: synapse-psc   # the service token (in service_tokens) Synapse's module uses
      homeserver: hs.example.org   # where new accounts are opened (default: server_name)

The admission endpoint answers only the service token named `synapse_token`: the bot's token,
an admin's or a user's OpenID token get 403, so nobody but the homeserver can make the bridge
open or look up accounts through it.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_PROFESSIONS = ("10",)
"""Profession code 10 of the register: médecin."""
_IDENTIFIER = re.compile(r"[0-9]{11}|[0-9A-Z]{9}")


class PscSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    admission: Literal["members", "register"] = "members"
    professions: tuple[str, ...] = Field(default=DEFAULT_PROFESSIONS, min_length=1)
    members: tuple[str, ...] = ()
    synapse_token: str = Field(default="synapse-psc", min_length=1, max_length=64)
    homeserver: str | None = None

    @field_validator("members")
    @classmethod
    def _identifiers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not _IDENTIFIER.fullmatch(item):
                raise ValueError(f"{item!r} is not an RPPS (11 digits) or ADELI (9) number")
        return value

    @field_validator("professions")
    @classmethod
    def _codes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not re.fullmatch(r"[0-9]{1,3}", item):
                raise ValueError(f"{item!r} is not a profession code of the register (like '10')")
        return value
