"""What Pro Santé Connect tells about a practitioner, read from its userinfo and ID token. Pure.

PSC's userinfo (scope `openid scope_all`) carries:

- `SubjectNameID`: the national identifier, `8` + RPPS number (11 digits) or `0` + ADELI
  number (9 characters). It is the practitioner's stable key in Caducée (the RPPS the
  directory links to an account), and what Synapse records as the external user ID.
- `given_name`, `family_name`;
- `SubjectRefPro.exercices[]`: the practitioner's professions (`codeProfession`, ...).

The level of assurance is the ID token's `acr` claim (`eidas1` for an e-CPS or a CPS card;
anything else is a weaker means). Synapse has already checked the ID token's signature,
issuer, audience, expiry and nonce before a mapping provider sees it, so reading its payload
again here is only decoding, not trusting something unchecked.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

REQUIRED_ACR = "eidas1"
"""The only level Caducée accepts: PSC's substantial level (e-CPS app or CPS card)."""

# ASCII only ([0-9], not \d, which also matches Arabic-Indic or full-width digits), whole string.
_RPPS_SUBJECT = re.compile(r"8([0-9]{11})")
_ADELI_SUBJECT = re.compile(r"0([0-9A-Z]{9})")
MAX_NAME = 100


class ClaimsError(ValueError):
    """The provider's answer lacks what identifies a practitioner; the message says what."""


@dataclass(frozen=True, slots=True)
class PscIdentity:
    """One practitioner as PSC vouches for them at this sign-in."""

    subject: str
    """`SubjectNameID` as PSC sends it (`8` + RPPS or `0` + ADELI)."""
    identifier: str
    """The RPPS (11 digits) or ADELI (9) number: the directory's key."""
    given_name: str
    family_name: str
    profession_codes: tuple[str, ...]
    acr: str | None


def national_identifier(subject: object) -> str:
    """The RPPS/ADELI number inside a `SubjectNameID`; ClaimsError when it is not one."""
    if not isinstance(subject, str):
        raise ClaimsError("SubjectNameID is missing from the provider's answer")
    text = subject.strip()
    found = _RPPS_SUBJECT.fullmatch(text) or _ADELI_SUBJECT.fullmatch(text)
    if found is None:
        raise ClaimsError("SubjectNameID is not a national identifier (8 + RPPS or 0 + ADELI)")
    return found.group(1)


def _name(value: object) -> str:
    if not isinstance(value, str):
        return ""
    return " ".join(value.split())[:MAX_NAME]


def profession_codes(userinfo: Mapping[str, Any]) -> tuple[str, ...]:
    """The `codeProfession` of every `SubjectRefPro.exercices[]` entry, in order, once each."""
    ref = userinfo.get("SubjectRefPro")
    if isinstance(ref, str):  # some PSC answers carry it as a JSON string
        try:
            ref = json.loads(ref)
        except ValueError:
            return ()
    exercices = ref.get("exercices") if isinstance(ref, Mapping) else None
    codes: list[str] = []
    for exercice in exercices if isinstance(exercices, list) else ():
        code = exercice.get("codeProfession") if isinstance(exercice, Mapping) else None
        if isinstance(code, str) and code.strip() and code.strip() not in codes:
            codes.append(code.strip())
    return tuple(codes)


def id_token_claims(token: Mapping[str, Any]) -> dict[str, Any]:
    """The payload of the (already verified) ID token in a token response; {} without one."""
    raw = token.get("id_token")
    if not isinstance(raw, str) or raw.count(".") != 2:
        return {}
    payload = raw.split(".")[1]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error):
        return {}
    return decoded if isinstance(decoded, dict) else {}


def acr_of(userinfo: Mapping[str, Any], token: Mapping[str, Any]) -> str | None:
    """The level of assurance: the ID token's `acr`, else userinfo's; None when neither says."""
    for source in (id_token_claims(token), userinfo):
        value = source.get("acr")
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def identity(userinfo: Mapping[str, Any], token: Mapping[str, Any]) -> PscIdentity:
    """Everything Caducée reads from one PSC sign-in; ClaimsError without a usable identifier."""
    subject = userinfo.get("SubjectNameID")
    return PscIdentity(
        subject=str(subject).strip(),
        identifier=national_identifier(subject),
        given_name=_name(userinfo.get("given_name")),
        family_name=_name(userinfo.get("family_name")),
        profession_codes=profession_codes(userinfo),
        acr=acr_of(userinfo, token),
    )
