"""What the directory keeps of a validated FHIR Practitioner / PractitionerRole (pure).

The Annuaire Santé API and the files people export from it are not uniform: code systems come
as canonical URLs (`https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/...`) or as OIDs
(`urn:oid:1.2.250.1.71.1.2.7`), the practising name sits on the Practitioner or in a
`PractitionerRole-Name` extension, addresses on a contained Location, an Organization or the
Practitioner. These functions read all of those and never fail: a missing piece becomes "".
Input objects are `fhir.resources` models (already validated); nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from bridge.directory.vocabulary import (
    DEPARTMENTS,
    PROFESSIONS,
    SPECIALTIES,
    department_for_postcode,
)

NATIONAL_ID_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
RPPS_SYSTEMS = frozenset({"https://rpps.esante.gouv.fr", "http://rpps.fr", "https://rpps.fr"})
_PROFESSION_SYSTEMS = ("TRE_G15", "TRE-G15", "urn:oid:1.2.250.1.71.1.2.7")
_SPECIALTY_SYSTEMS = ("TRE_R38", "TRE-R38", "urn:oid:1.2.250.1.213.2.28")
_MODE_SYSTEMS = ("TRE_R23", "TRE-R23", "urn:oid:1.2.250.1.213.1.6.1.18")
_MODES = {"L": "Libéral", "S": "Salarié", "B": "Bénévole"}
_TITLES = {"dr": "Docteur", "docteur": "Docteur", "pr": "Professeur", "professeur": "Professeur"}
_FRANCE = frozenset({"", "fr", "fra", "france", "250"})
_POSTCODE_IN_TEXT = re.compile(r"\b(\d{5})\b\s*(.*)")
_CEDEX = re.compile(r"\s+CEDEX(\s+\d+)?$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a Practitioner is, as far as the directory cares."""

    rpps: str
    id_type: str  # "8" RPPS, "0" ADELI
    last_name: str
    first_name: str
    title: str


@dataclass(frozen=True, slots=True)
class Place:
    """Where an activity happens (from a Location, an Organization or the Practitioner)."""

    organisation: str = ""
    postcode: str = ""
    city: str = ""
    department_code: str = ""
    department: str = ""
    country: str = ""


@dataclass(frozen=True, slots=True)
class Coded:
    code: str
    label: str


def _system_matches(system: str | None, markers: tuple[str, ...]) -> bool:
    return bool(system) and any(marker in str(system) for marker in markers)


def _codings(concepts: Iterable[Any] | None) -> Iterator[Any]:
    for concept in concepts or ():
        yield from getattr(concept, "coding", None) or ()


def clean(text: Any) -> str:
    """Text with runs of whitespace collapsed; "" for None."""
    return " ".join(str(text).split()) if text else ""


def identity_from_identifiers(identifiers: Iterable[Any] | None) -> tuple[str, str] | None:
    """`(number, id_type)` from identifiers: RPPS first, else the national id ("8"/"0" + id)."""
    rpps = national = adeli = ""
    for ident in identifiers or ():
        value = clean(getattr(ident, "value", None)).replace(" ", "")
        system = str(getattr(ident, "system", None) or "")
        types = {str(c.code).upper() for c in _codings([getattr(ident, "type", None)]) if c.code}
        if not value:
            continue
        if system in RPPS_SYSTEMS or "RPPS" in types:
            rpps = rpps or value
        elif system == NATIONAL_ID_SYSTEM or "IDNPS" in types:
            national = national or value
        elif "ADELI" in types or "adeli" in system.lower():
            adeli = adeli or value
    if rpps:
        return rpps, "8"
    if national[:1] in ("8", "0") and len(national) > 1:
        return national[1:], national[0]
    if adeli:
        return adeli, "0"
    return None


def title_from_prefixes(prefixes: Iterable[Any] | None) -> str:
    """Practising title ("Docteur", "Professeur"); "M"/"MME" are civilities, not titles."""
    for prefix in prefixes or ():
        title = _TITLES.get(clean(prefix).lower().rstrip("."))
        if title:
            return title
    return ""


def pick_name(names: Iterable[Any] | None) -> Any | None:
    """The HumanName to show: official or usual first, then any with a family name."""
    candidates = [n for n in names or () if n is not None]
    for wanted in ("official", "usual"):
        for name in candidates:
            if getattr(name, "use", None) == wanted and getattr(name, "family", None):
                return name
    for name in candidates:
        if getattr(name, "family", None):
            return name
    return candidates[0] if candidates else None


def name_parts(name: Any | None) -> tuple[str, str, str]:
    """`(last, first, title)` of a HumanName (given names joined by a space)."""
    if name is None:
        return "", "", ""
    given = " ".join(clean(g) for g in getattr(name, "given", None) or () if g)
    family = clean(getattr(name, "family", None))
    if not family and not given and getattr(name, "text", None):
        *first, last = clean(name.text).split(" ")
        family, given = last, " ".join(first)
    return family, given, title_from_prefixes(getattr(name, "prefix", None))


def role_name(extensions: Iterable[Any] | None) -> Any | None:
    """The practising name a PractitionerRole carries in its `…PractitionerRole-Name` extension."""
    for ext in extensions or ():
        url = str(getattr(ext, "url", "") or "").lower()
        if url.endswith(("practitionerrole-name", "practitioner-role-name")):
            return getattr(ext, "valueHumanName", None)
    return None


def professions(concepts: Iterable[Any] | None) -> list[Coded]:
    """Professions (TRE_G15) named by codings; a bare known code without system counts too."""
    found: list[Coded] = []
    for coding in _codings(concepts):
        code = clean(coding.code)
        known = _system_matches(coding.system, _PROFESSION_SYSTEMS)
        if code and (known or (not coding.system and code in PROFESSIONS)):
            found.append(Coded(code, PROFESSIONS.get(code) or clean(coding.display)))
    return found


def specialties(concepts: Iterable[Any] | None) -> list[Coded]:
    """Ordinal specialties (TRE_R38) named by codings; SMxx-style codes are recognised anyway."""
    found: list[Coded] = []
    for coding in _codings(concepts):
        code = clean(coding.code)
        if code and (_system_matches(coding.system, _SPECIALTY_SYSTEMS) or code in SPECIALTIES):
            label = SPECIALTIES.get(code) or re.sub(r"\s*\([A-Z]+\)$", "", clean(coding.display))
            if all(f.code != code for f in found):
                found.append(Coded(code, label))
    return found


def mode(concepts: Iterable[Any] | None) -> str:
    """Mode of practice label (Libéral, Salarié, Bénévole) from TRE_R23 codings."""
    for coding in _codings(concepts):
        if _system_matches(coding.system, _MODE_SYSTEMS) and coding.code:
            return _MODES.get(str(coding.code), clean(coding.display) or str(coding.code))
    return ""


def place_from_address(address: Any | None, organisation: str = "") -> Place:
    """A Place from a FHIR Address; the postcode may hide in a line ("75015 PARIS CEDEX")."""
    if address is None:
        return Place(organisation=organisation)
    postcode = clean(getattr(address, "postalCode", None))
    city = clean(getattr(address, "city", None))
    if not postcode or not city:
        for line in [*(getattr(address, "line", None) or ()), getattr(address, "text", None)]:
            match = _POSTCODE_IN_TEXT.search(clean(line))
            if match:
                postcode = postcode or match.group(1)
                city = city or match.group(2)
                break
    city = _CEDEX.sub("", city)
    country = clean(getattr(address, "country", None))
    if country.lower() in _FRANCE:
        country = ""
    dept = department_for_postcode(postcode) if not country else ""
    return Place(organisation, postcode, city, dept, DEPARTMENTS.get(dept, ""), country)


def first_address(addresses: Iterable[Any] | None) -> Any | None:
    """The work address if one is marked so, else the first."""
    candidates = [a for a in addresses or () if a is not None]
    for address in candidates:
        if getattr(address, "use", None) == "work":
            return address
    return candidates[0] if candidates else None
