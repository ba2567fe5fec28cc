"""The directory's reference vocabulary: how doctors write names, specialties and places.

Doctors search the register the way they speak ("cardio lyon", "MG 13", "pédiatre paris 15"),
while the register speaks in codes (`SM04`, `10`, `69`). This module holds the bridge between
the two, as pure data and pure functions:

- `fold` is *the* normalisation shared by indexing and querying, so that "Martin-Léger",
  "MARTIN LEGER" and "martin léger" meet on the same tokens.
- `SPECIALTIES` (ANS nomenclature TRE_R38 "Spécialité ordinale"), `PROFESSIONS` (TRE_G15) and
  `DEPARTMENTS` map the register's codes to labels.
- `match_specialty`, `match_profession` and `match_department` find, in a folded query, the
  longest word runs that name a specialty, a profession or a department. They return
  *candidates*: "nord" is a department and a surname, "radio" a specialty and maybe a name; the
  search decides how to weigh them.

The data ships as package data (`data/vocabulary.json`), read once at import; nothing else here
does I/O.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping, Sequence
from importlib import resources
from types import MappingProxyType
from typing import Any

__all__ = [
    "DEPARTMENTS",
    "PROFESSIONS",
    "SPECIALTIES",
    "TITLE_WORDS",
    "department_code_for_token",
    "department_for_postcode",
    "fold",
    "match_department",
    "match_profession",
    "match_specialty",
    "profession_codes_for",
    "specialty_codes_for",
]

Match = tuple[int, int, frozenset[str]]
"""`(start, end, codes)`: tokens[start:end] name the codes (end exclusive)."""

# --- folding -------------------------------------------------------------------------------

# Letters that Unicode decomposition does not split into base letter + accent.
_LIGATURES = {"œ": "oe", "æ": "ae", "ß": "ss", "ø": "o", "đ": "d", "ł": "l", "ı": "i", "þ": "th"}


def _fold_char(char: str) -> str:
    """Fold one character: accents dropped, ligatures expanded, non-alphanumerics to a space."""
    lowered = char.lower()
    if lowered in _LIGATURES:
        return _LIGATURES[lowered]
    base = "".join(
        c for c in unicodedata.normalize("NFKD", lowered) if not unicodedata.combining(c)
    )
    return "".join(c if c.isalnum() else " " for c in base) or " "


# Precomputed for ASCII and the Latin blocks French names use, so indexing 2 M lines stays a
# `str.translate` call per field rather than a Unicode decomposition per character.
_FOLD_TABLE: dict[int, str] = {cp: _fold_char(chr(cp)) for cp in range(0x250)}


def fold(text: str) -> str:
    """Lowercase, strip accents, turn hyphens/apostrophes/punctuation into single spaces, trim.

    Used for both the index and the query:
    ``fold("MARTIN-LÉGER d'Aÿ") == "martin leger d ay"``.
    """
    folded = text.translate(_FOLD_TABLE)
    if not folded.isascii():
        folded = "".join(c if c.isascii() else _fold_char(c) for c in folded)
    return " ".join(folded.split())


# --- data ----------------------------------------------------------------------------------


def _load() -> dict[str, Any]:
    raw = resources.files(__package__).joinpath("data", "vocabulary.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(raw)
    return data


_DATA = _load()

SPECIALTIES: Mapping[str, str] = MappingProxyType(dict(_DATA["specialties"]))
"""Ordinal specialty code (`Code savoir-faire`, TRE_R38) → label, e.g. SM54 → Médecine générale."""

PROFESSIONS: Mapping[str, str] = MappingProxyType(dict(_DATA["professions"]))
"""Profession code (`Code profession`, TRE_G15) → label, e.g. 10 → Médecin."""

DEPARTMENTS: Mapping[str, str] = MappingProxyType(dict(_DATA["departments"]))
"""Department code → name: 01…95 with 2A/2B, overseas 971–976, and the 97x/98x collectivities."""

TITLE_WORDS: frozenset[str] = frozenset({"dr", "docteur", "doct", "pr", "professeur", "prof"})
"""Folded courtesy titles a query may carry ("Dr Martin"); they name nobody."""


def _stem(token: str) -> str:
    """Reduce plural and feminine forms so "cardiologues", "chirurgienne" match their entry."""
    if token.endswith("iennes") or token.endswith("ienne"):
        return token[: token.rindex("ienne")] + "ien"
    if token.endswith("ieres") or token.endswith("iere"):
        return token[: token.rindex("iere")] + "ier"
    if len(token) > 3 and token.endswith("s") and not token.endswith("ss"):
        return token[:-1]
    return token


def _phrase_key(tokens: Sequence[str], *, stem: bool) -> str:
    return " ".join(_stem(t) for t in tokens) if stem else " ".join(tokens)


class _PhraseTable:
    """Folded phrase → codes, with the longest-match scan shared by the three matchers."""

    def __init__(self, entries: Mapping[str, frozenset[str]], *, stem: bool) -> None:
        self._stem = stem
        self._codes: dict[str, frozenset[str]] = {}
        for phrase, codes in entries.items():
            key = _phrase_key(fold(phrase).split(), stem=stem)
            self._codes[key] = self._codes.get(key, frozenset()) | codes
        self.max_words = max(len(k.split()) for k in self._codes)

    def lookup(self, phrase_folded: str) -> frozenset[str]:
        return self._codes.get(_phrase_key(phrase_folded.split(), stem=self._stem), frozenset())

    def scan(self, tokens: Sequence[str]) -> list[Match]:
        found: list[Match] = []
        i = 0
        while i < len(tokens):
            for width in range(min(self.max_words, len(tokens) - i), 0, -1):
                codes = self._codes.get(_phrase_key(tokens[i : i + width], stem=self._stem))
                if codes:
                    found.append((i, i + width, codes))
                    i += width
                    break
            else:
                i += 1
        return found


def _with_labels(
    synonyms: Mapping[str, list[str]], labels: Mapping[str, str]
) -> dict[str, frozenset[str]]:
    """Synonyms plus every official label, so typing the register's own words also works."""
    table = {phrase: frozenset(codes) for phrase, codes in synonyms.items()}
    for code, label in labels.items():
        key = fold(label)
        table[key] = table.get(key, frozenset()) | {code}
    return table


_SPECIALTY_TABLE = _PhraseTable(_with_labels(_DATA["specialty_synonyms"], SPECIALTIES), stem=True)
_PROFESSION_TABLE = _PhraseTable(_with_labels(_DATA["profession_synonyms"], PROFESSIONS), stem=True)


def _department_entries() -> dict[str, frozenset[str]]:
    table = {fold(name): frozenset({code}) for code, name in DEPARTMENTS.items()}
    for alias, code in _DATA["department_aliases"].items():
        table[fold(alias)] = frozenset({code})
    # People write "St"/"Ste" for Saint/Sainte: "seine st denis", "st pierre et miquelon".
    for key, codes in list(table.items()):
        words = key.split()
        for full, short in (("saint", "st"), ("sainte", "ste")):
            if full in words:
                table[" ".join(short if w == full else w for w in words)] = codes
    return table


# No stemming for places: "Gers" and "Doubs" end in s for good.
_DEPARTMENT_TABLE = _PhraseTable(_department_entries(), stem=False)


# --- public lookups ------------------------------------------------------------------------


def specialty_codes_for(term_folded: str) -> frozenset[str]:
    """Specialty codes a whole folded term names ("cardio" → SM04, SM73, …); empty if none."""
    return _SPECIALTY_TABLE.lookup(term_folded)


def profession_codes_for(term_folded: str) -> frozenset[str]:
    """Profession codes a whole folded term names ("kine" → 70); empty if none."""
    return _PROFESSION_TABLE.lookup(term_folded)


def match_specialty(tokens: Sequence[str]) -> list[Match]:
    """Longest runs of folded tokens naming specialties, left to right, without overlap.

    ``match_specialty(["medecin", "generaliste", "lyon"]) == [(0, 2, {"SM54", "SM53", "SM26"})]``
    """
    return _SPECIALTY_TABLE.scan(tokens)


def match_profession(tokens: Sequence[str]) -> list[Match]:
    """Longest runs of folded tokens naming professions ("sage femme" → 50)."""
    return _PROFESSION_TABLE.scan(tokens)


def match_department(tokens: Sequence[str]) -> list[Match]:
    """Longest runs of folded tokens naming departments ("bouches du rhone" → 13, not 69).

    Names only; for numbers ("69", "2a", "971") use `department_code_for_token`.
    """
    return _DEPARTMENT_TABLE.scan(tokens)


def department_code_for_token(token: str) -> str | None:
    """The department code a typed token spells ("69", "2a" → "2A", "974"), else None.

    A single digit is refused: "1" is more likely part of an address or an arrondissement.
    """
    code = token.strip().upper()
    return code if code in DEPARTMENTS else None


def department_for_postcode(postcode: str) -> str:
    """Department code of a French postcode, "" when it is not one.

    Overseas postcodes use three digits (97411 → 974). Corsica's postcodes all start with 20:
    20000–20199 are Corse-du-Sud (2A), the rest Haute-Corse (2B), the postal convention.
    A four-digit postcode is taken as one whose leading zero a spreadsheet ate (1000 → 01).
    """
    digits = postcode.strip().replace(" ", "")
    if len(digits) == 4 and digits.isdigit():
        digits = "0" + digits
    if len(digits) != 5 or not digits.isdigit():
        return ""
    if digits.startswith(("97", "98")):
        code = digits[:3]
        return code if code in DEPARTMENTS else ""
    if digits.startswith("20"):
        return "2A" if int(digits[2:]) < 200 else "2B"
    code = digits[:2]
    return code if code in DEPARTMENTS else ""
