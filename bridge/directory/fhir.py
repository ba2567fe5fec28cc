"""Import FHIR R4 Practitioner / PractitionerRole resources as directory records.

Input: a JSON file holding a Bundle, a single resource or an array of resources, or an ndjson
file (one resource, or one Bundle, per line), as exported from the Annuaire Santé API or by
FHIR bulk export. Every resource is validated with `fhir.resources` before use.

Which FHIR version: the national directory API speaks R4, but `fhir.resources` 8.x ships R5 by
default plus an `R4B` and an `STU3` package, no plain R4. R4B is the R4 technical correction:
Practitioner, PractitionerRole, Organization, Location, Bundle and every datatype they use are
unchanged from R4, so R4 documents validate as R4B. The R5 models would reject valid R4
(e.g. PractitionerRole.availableTime was removed), hence `fhir.resources.R4B`.

How resources become records: a PractitionerRole is one activity (one record), joined with
its Practitioner (identifier, name), its Organization and Location (name, address) when they
are in the same file; a Practitioner without any role still gives one record, with what its
`qualification` says. A role naming several ordinal specialties gives one record per
specialty, like the register's text extract. Inactive practitioners and roles are skipped.

Memory and streaming: ndjson is read line by line, twice (first Practitioners, Organizations
and Locations, kept in a compact index for the join; then roles), so memory grows with the
number of practitioners, not with the file. A Bundle or JSON document is loaded whole (the
API pages its Bundles, which stay small); use the register's text extract for the national
file. Problems come back in the stream as `ParseError` (the importer counts them against its
threshold) with the ndjson line or Bundle entry number (1-based), never as exceptions;
`OSError` from opening the file is left to the caller.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from bridge.directory import fhir_mapping as fm
from bridge.directory.model import ParseError, ParseWarning, PractitionerRecord, RppsId

logger = logging.getLogger(__name__)

__all__ = ["FhirLineError", "iter_fhir_records"]

FhirLineError = ParseError
"""A FHIR entry that could not become a record (same type as the text parser's errors)."""

FhirItem = PractitionerRecord | ParseError | ParseWarning
_Raw = tuple[int, Any, str]  # (line or entry number, decoded JSON, fullUrl or "")
_INDEXED = ("Practitioner", "Organization", "Location")


def _model(resource_type: str) -> Any:
    return get_fhir_model_class(resource_type)


# --- reading ---------------------------------------------------------------------------------


def _same_number(number: int) -> Callable[[int], int]:
    return lambda _: number


def _bundle_entries(bundle: dict[str, Any], number: Callable[[int], int]) -> Iterator[_Raw]:
    for i, entry in enumerate(bundle.get("entry") or ()):
        resource = entry.get("resource") if isinstance(entry, dict) else entry
        if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
            # A Bundle per practitioner inside a collection: its entries share the number.
            yield from _bundle_entries(resource, _same_number(number(i)))
        elif isinstance(entry, dict):
            yield number(i), resource, str(entry.get("fullUrl") or "")
        else:
            yield number(i), entry, ""


def _expand(number: int, doc: Any, *, entry_numbers: bool) -> Iterator[_Raw]:
    if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
        yield from _bundle_entries(doc, (lambda i: i + 1) if entry_numbers else lambda i: number)
    elif isinstance(doc, list) and entry_numbers:
        for i, item in enumerate(doc):
            yield from _expand(i + 1, item, entry_numbers=False)
    else:
        yield number, doc, ""


class _Source:
    """Re-iterable (number, resource, fullUrl) triples from an ndjson or JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.errors: list[ParseError] = []
        self._document: list[_Raw] | None = None
        self.ndjson = self._looks_like_ndjson()
        if not self.ndjson:
            self._load_document()

    def _looks_like_ndjson(self) -> bool:
        with self.path.open(encoding="utf-8-sig", errors="replace") as stream:
            lines = (line for line in stream if line.strip())
            first, second = next(lines, ""), next(lines, "")
        try:
            json.loads(first)
        except ValueError:
            return False
        return bool(second)

    def _load_document(self) -> None:
        try:
            with self.path.open(encoding="utf-8-sig") as stream:
                doc = json.load(stream)
        except UnicodeDecodeError as exc:
            self.errors.append(ParseError(1, f"the file is not UTF-8 text ({exc.reason})"))
            doc = None
        except json.JSONDecodeError as exc:
            where = f"line {exc.lineno}, column {exc.colno}"
            self.errors.append(ParseError(exc.lineno, f"not valid JSON ({where}): {exc.msg}"))
            doc = None
        self._document = [] if doc is None else list(_expand(1, doc, entry_numbers=True))

    def __iter__(self) -> Iterator[_Raw | ParseError]:
        if self._document is not None:
            yield from self._document
            return
        with self.path.open("rb") as stream:
            for number, raw in enumerate(stream, start=1):
                if not raw.strip():
                    continue
                try:
                    doc = json.loads(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
                except UnicodeDecodeError as exc:
                    yield ParseError(number, f"not UTF-8 text ({exc.reason})")
                    continue
                except ValueError as exc:
                    yield ParseError(number, f"not valid JSON: {exc}")
                    continue
                yield from _expand(number, doc, entry_numbers=False)


# --- validation and the join index -----------------------------------------------------------


def _validate(number: int, raw: Any) -> tuple[str, Any] | ParseError:
    if not isinstance(raw, dict) or not isinstance(raw.get("resourceType"), str):
        return ParseError(number, "not a FHIR resource (no resourceType)")
    resource_type = raw["resourceType"]
    if resource_type not in (*_INDEXED, "PractitionerRole"):
        return resource_type, None
    try:
        return resource_type, _model(resource_type).model_validate(raw)
    except ValidationError as exc:
        return ParseError(number, f"invalid {resource_type}: {_summarise(exc)}")
    except (ValueError, TypeError) as exc:  # fhir.resources raises these for odd shapes
        return ParseError(number, f"invalid {resource_type}: {exc}")


def _summarise(exc: ValidationError, limit: int = 3) -> str:
    parts = []
    for error in exc.errors()[:limit]:
        where = ".".join(str(p) for p in error.get("loc", ())) or "resource"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _keys(resource_type: str, resource: Any, full_url: str) -> list[str]:
    keys = [f"{resource_type}/{resource.id}"] if getattr(resource, "id", None) else []
    return [*keys, full_url] if full_url else keys


def _reference_key(reference: str, resource_type: str) -> str:
    """'https://x/fhir/Practitioner/42/_history/3' or 'Practitioner/42' → 'Practitioner/42'."""
    marker = f"{resource_type}/"
    if marker in reference:
        return marker + reference.rsplit(marker, 1)[1].split("/", 1)[0]
    return reference


@dataclass(frozen=True, slots=True)
class _Person:
    number: int
    identity: fm.Identity
    profession: fm.Coded | None
    specialties: tuple[fm.Coded, ...]
    place: fm.Place


class _Index:
    """Practitioners, Organizations and Locations of the file, by every way a role may cite them."""

    def __init__(self) -> None:
        self.people: dict[str, _Person] = {}
        self.places: dict[str, fm.Place] = {}
        self.order: list[_Person] = []

    def add(self, number: int, resource_type: str, resource: Any, full_url: str) -> FhirItem | None:
        if resource_type == "Practitioner":
            return self._add_person(number, resource, full_url)
        if resource_type == "Organization":
            address = fm.first_address(resource.address)
            place = fm.place_from_address(address, fm.clean(resource.name))
        else:
            place = fm.place_from_address(resource.address, fm.clean(resource.name))
        for key in _keys(resource_type, resource, full_url):
            self.places[key] = place
        return None

    def _add_person(self, number: int, practitioner: Any, full_url: str) -> FhirItem | None:
        if practitioner.active is False:
            return None
        found = fm.identity_from_identifiers(practitioner.identifier)
        if found is None:
            return ParseError(number, "Practitioner has no RPPS or ADELI identifier")
        last, first, title = fm.name_parts(fm.pick_name(practitioner.name))
        qualifications = [q.code for q in practitioner.qualification or () if q.code]
        professions = fm.professions(qualifications)
        person = _Person(
            number,
            fm.Identity(found[0], found[1], last, first, title),
            professions[0] if professions else None,
            tuple(fm.specialties(qualifications)),
            fm.place_from_address(fm.first_address(practitioner.address)),
        )
        self.order.append(person)
        for key in (*_keys("Practitioner", practitioner, full_url), f"id:{found[0]}"):
            self.people[key] = person
        return _luhn_warning(number, found)


def _luhn_warning(number: int, found: tuple[str, str]) -> ParseWarning | None:
    rpps, id_type = found
    if id_type != "8" or (len(rpps) == 11 and rpps.isdigit() and _luhn_ok(rpps)):
        return None
    return ParseWarning(number, f"RPPS number {rpps} does not pass its check digit")


def _luhn_ok(number: str) -> bool:
    digits = [int(c) for c in reversed(number)]
    total = sum(digits[0::2]) + sum(d * 2 - 9 if d > 4 else d * 2 for d in digits[1::2])
    return total % 10 == 0


# --- roles become records ----------------------------------------------------------------------


def _resolve_person(role: Any, index: _Index) -> _Person | None:
    ref = role.practitioner
    if ref is None:
        return None
    if ref.reference:
        person = index.people.get(_reference_key(str(ref.reference), "Practitioner"))
        if person is not None:
            return person
    if ref.identifier is not None:
        found = fm.identity_from_identifiers([ref.identifier])
        if found is not None:
            return index.people.get(f"id:{found[0]}")
    return None


def _resolve_place(role: Any, index: _Index, person: _Person) -> fm.Place:
    contained = {
        f"#{r.id}": fm.place_from_address(r.address, fm.clean(r.name))
        for r in role.contained or ()
        if r.get_resource_type() == "Location" and r.id
    }
    organisation = fm.Place()
    if role.organization is not None:
        key = _reference_key(str(role.organization.reference or ""), "Organization")
        organisation = index.places.get(key) or fm.Place(fm.clean(role.organization.display))
    for ref in role.location or ():
        key = str(ref.reference or "")
        location = contained.get(key) or index.places.get(_reference_key(key, "Location"))
        if location is not None and (location.postcode or location.city or location.country):
            name = organisation.organisation or location.organisation
            return replace(location, organisation=name)
    if organisation.postcode or organisation.city or organisation.country:
        return organisation
    return replace(person.place, organisation=organisation.organisation)


def _role_records(number: int, role: Any, index: _Index, with_role: set[int]) -> list[FhirItem]:
    if role.active is False:
        return []
    person = _resolve_person(role, index)
    own_name = fm.role_name(role.extension)
    if person is None:
        ref = role.practitioner
        found = fm.identity_from_identifiers([ref.identifier]) if ref and ref.identifier else None
        if found is None or own_name is None:
            cited = (ref.reference or ref.display or "?") if ref else "none"
            return [
                ParseError(number, f"PractitionerRole's practitioner ({cited}) is not in the file")
            ]
        identity = fm.Identity(found[0], found[1], *fm.name_parts(own_name))
        person = _Person(number, identity, None, (), fm.Place())
    with_role.add(id(person))
    identity = person.identity
    if own_name is not None:
        last, first, title = fm.name_parts(own_name)
        identity = fm.Identity(
            identity.rpps,
            identity.id_type,
            last or identity.last_name,
            first or identity.first_name,
            title or identity.title,
        )
    professions = fm.professions(role.code)
    profession = professions[0] if professions else person.profession
    specialties: list[fm.Coded | None] = [
        *(fm.specialties(role.specialty) or person.specialties)
    ] or [None]
    place = _resolve_place(role, index, person)
    mode = fm.mode(role.code)
    return [_record(identity, profession, specialty, mode, place) for specialty in specialties]


def _record(
    identity: fm.Identity,
    profession: fm.Coded | None,
    specialty: fm.Coded | None,
    mode: str,
    place: fm.Place,
) -> PractitionerRecord:
    return PractitionerRecord(
        rpps=RppsId(identity.rpps),
        id_type=identity.id_type,
        last_name=identity.last_name,
        first_name=identity.first_name,
        title=identity.title,
        profession_code=profession.code if profession else "",
        profession=profession.label if profession else "",
        specialty_code=specialty.code if specialty else "",
        specialty=specialty.label if specialty else "",
        mode=mode,
        organisation=place.organisation,
        postcode=place.postcode,
        city=place.city,
        department_code=place.department_code,
        department=place.department,
        country=place.country,
    )


def _is_role(raw: Any) -> bool:
    return isinstance(raw, dict) and raw.get("resourceType") == "PractitionerRole"


def iter_fhir_records(path: Path) -> Iterator[FhirItem]:
    """Records (and errors/warnings) from a FHIR Bundle, resource or ndjson file; see module doc."""
    source = _Source(path)
    yield from source.errors
    index = _Index()
    for item in source:  # pass 1: who and where
        if isinstance(item, ParseError):
            yield item
            continue
        number, raw, full_url = item
        if _is_role(raw):
            continue
        checked = _validate(number, raw)
        if isinstance(checked, ParseError):
            yield checked
        elif checked[1] is not None:
            extra = index.add(number, checked[0], checked[1], full_url)
            if extra is not None:
                yield extra
    with_role: set[int] = set()
    for item in source:  # pass 2: what they do, and where
        if isinstance(item, ParseError) or not _is_role(item[1]):
            continue
        number, raw, _ = item
        checked = _validate(number, raw)
        if isinstance(checked, ParseError):
            yield checked
        else:
            yield from _role_records(number, checked[1], index, with_role)
    for person in index.order:  # practitioners no role mentions: one record each
        if id(person) not in with_role:
            for specialty in person.specialties or (None,):
                yield _record(person.identity, person.profession, specialty, "", person.place)
    logger.debug("FHIR file %s read (%d practitioners indexed)", path.name, len(index.order))
