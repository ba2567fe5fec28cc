"""Types shared by the directory's parsers, importer and search.

A `PractitionerRecord` is one *activity* line of the register (a practitioner with two
practices yields two records with the same `rpps`). Parsers (RPPS text extract, FHIR) produce
them; the importer stores them; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NewType

DEFAULT_MAX_ERRORS = 100
"""Malformed lines an import tolerates (each reported with its line number) before it aborts
and changes nothing."""

RppsId = NewType("RppsId", str)
"""The national identifier as published: 11-digit RPPS or 9-digit ADELI (`Identifiant PP`)."""


@dataclass(frozen=True, slots=True)
class PractitionerRecord:
    """One activity of one practitioner, as the register publishes it (public data only)."""

    rpps: RppsId
    id_type: str  # "8" RPPS, "0" ADELI (register's `Type d'identifiant PP`)
    last_name: str  # `Nom d'exercice`, as published (accents kept)
    first_name: str  # `Prénom d'exercice`
    title: str  # `Libellé civilité d'exercice`, e.g. "Docteur" ("" if none)
    profession_code: str  # e.g. "10"
    profession: str  # e.g. "Médecin"
    specialty_code: str  # `Code savoir-faire`, e.g. "SM04" ("" if none)
    specialty: str  # `Libellé savoir-faire`, e.g. "Cardiologie et maladies vasculaires"
    mode: str  # `Libellé mode exercice`, e.g. "Libéral"
    organisation: str  # `Raison sociale site` ("" if none)
    postcode: str  # `Code postal (coord. structure)`, or taken from `Bureau cedex`
    city: str  # `Libellé commune`, or taken from `Bureau cedex`
    department_code: str  # e.g. "69", "2A", "971"; derived from postcode when absent
    department: str  # e.g. "Rhône"
    country: str  # `Libellé pays` ("" means France)


RecordRow = tuple[str, ...]
"""A record as a tuple, in `PractitionerRecord` field order (`PractitionerRecord(*row)`)."""


@dataclass(frozen=True, slots=True)
class ParseError:
    """A line (or FHIR entry) that cannot become a record; counted against the import's threshold.

    `line` is the 1-based line number in the file (the header is line 1), or the entry number
    for FHIR input, so an admin can open the file at the right place.
    """

    line: int
    message: str


@dataclass(frozen=True, slots=True)
class ParseWarning:
    """Something odd about a record that is still imported (e.g. an RPPS failing its Luhn check)."""

    line: int
    message: str
