"""Detection of patient identifiers in text that Matrix never encrypts.

Room state (names, topics, member display names and reasons...), reaction keys and
redaction reasons travel in clear to every homeserver in a room and are shown in
notifications, room lists and directories. A doctor who names a case room after a
patient's social security number has published it; this module spots such numbers so
the guard can refuse the event (and the bot can refuse a case label).

What counts as a patient identifier here:

- the French NIR ("numéro de sécurité sociale", 13 characters + a 2-digit key), which
  is also the patient's INS (Identifiant National de Santé: the "matricule INS" is the
  patient's own NIR, or their NIA when they have no NIR yet). The NIA and the
  temporary NIR have the same shape and the same key, so one detector covers them;
- the same 13 characters written alone, without the key, when they form a plausible
  NIR (see `is_plausible_nir_without_key`);
- the legacy INS-C (INS "calculé", 20 digits + a 2-digit key, computed from the
  Carte Vitale between 2010 and 2020);
- any extra pattern the federation configures (e.g. a hospital's IPP format).

How text is read, so that a number cannot be disguised:

- every Unicode decimal digit counts as its digit (Arabic-Indic, Devanagari, full-width,
  mathematical...; NFKC first folds circled and superscript forms);
- invisible characters (Unicode "default ignorable" code points: joiners, variation
  selectors, the combining grapheme joiner, Hangul fillers...) and combining marks are
  separators, as is anything that is neither a letter nor a number (spaces of any
  kind and count, `/`, `,`, `·`, dots, dashes, Braille blank, line breaks...);
- a letter, or a number that is not a decimal digit, ends a run of digit groups
  (Corsica's `2A`/`2B` excepted).

A run is a sequence of digit groups separated only by separators. A NIR (or INS-C) is
found when consecutive whole groups of a run add up to its 15 (or 22) characters and the
key is right, whatever the grouping. Requiring whole groups keeps a number glued inside
a longer one from being read, and the key (1 chance in 97 by accident) keeps RPPS (11
digits), ADELI and FINESS (9), SIRET (14), phone numbers, dates and doses from being
taken for patient numbers.

Findings never carry the matched text: it must not end up in logs or error messages.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

NIR_KIND = "NIR / INS (French social security number)"
INS_C_KIND = "INS-C (legacy computed health identifier)"

_NIR_LENGTH = 15
_NIR_WITHOUT_KEY = 13
_INS_C_LENGTH = 22

# Unicode "Default_Ignorable_Code_Point" (DerivedCoreProperties.txt): rendered as nothing.
_IGNORABLE_RANGES = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
    (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)  # fmt: skip


@dataclass(frozen=True)
class NamedPattern:
    """An extra identifier format configured by the federation."""

    name: str
    regex: re.Pattern[str]


def is_invisible(ch: str) -> bool:
    """Whether ``ch`` is drawn as nothing (format, ignorable, combining mark, blank)."""
    code = ord(ch)
    if any(low <= code <= high for low, high in _IGNORABLE_RANGES):
        return True
    return unicodedata.category(ch)[0] == "M" or unicodedata.category(ch) == "Cf"


def normalise(text: str) -> str:
    """Fold the text so look-alike characters cannot smuggle digits past the detectors.

    NFKC maps compatibility forms (full-width, circled, superscript) to plain ones;
    every decimal digit becomes its ASCII digit; invisible characters are dropped so
    they cannot split a word or a number.
    """
    out: list[str] = []
    for ch in unicodedata.normalize("NFKC", text):
        digit = unicodedata.decimal(ch, None)
        if digit is not None:
            out.append(str(digit))
        elif not is_invisible(ch):
            out.append(ch)
    return "".join(out)


def nir_key(first13: str) -> int:
    """The control key of a NIR given its first 13 characters (Corsica 2A/2B allowed)."""
    dept = first13[5:7].upper()
    if dept == "2A":
        first13 = first13[:5] + "19" + first13[7:]
    elif dept == "2B":
        first13 = first13[:5] + "18" + first13[7:]
    return 97 - int(first13) % 97


def _plausible_body(first13: str, sexes: str) -> bool:
    """Sex digit, month 01-12 or 20-99 (INSEE's unknown or fictitious months) and
    department 01-99, 2A or 2B; every other character a digit."""
    if len(first13) != _NIR_WITHOUT_KEY or first13[0] not in sexes:
        return False
    dept = first13[5:7].upper()
    body = first13[:5] + first13[7:]
    if not body.isascii() or not body.isdigit():
        return False
    if dept not in ("2A", "2B") and (not dept.isascii() or not dept.isdigit() or dept == "00"):
        return False
    month = int(first13[3:5])
    return not (month == 0 or 13 <= month <= 19)


def is_valid_nir(compact: str) -> bool:
    """Whether 15 characters without separators form a NIR/NIA with a correct key.

    Structure checked beyond the key: sex digit 1-4, 7 or 8; month 01-12 or 20-99;
    department 01-99, 2A or 2B; everything else digits.
    """
    if len(compact) != _NIR_LENGTH or not compact[13:].isascii() or not compact[13:].isdigit():
        return False
    return _plausible_body(compact[:13], "123478") and nir_key(compact[:13]) == int(compact[13:])


def is_plausible_nir_without_key(compact: str) -> bool:
    """Whether 13 characters standing alone look enough like a NIR to be refused.

    Without its key a NIR cannot be checked, and about half of all 13-digit numbers
    have a NIR's structure. We still refuse those that look like the NIR of someone
    born in France (sex 1 or 2, month 01-12, 20-42 or 50-99, department 01-99, 2A or
    2B, commune and order number not 000) when the whole number stands alone: a patient
    identifier leaking in clear costs far more than a doctor rewording a label. Sex
    digits 3/4/7/8 are left out: French barcodes and drug codes (CIP13, EAN-13 start
    with 3) are 13 digits too, and temporary numbers are rare.
    """
    if not _plausible_body(compact, "12"):
        return False
    month = int(compact[3:5])
    if 43 <= month <= 49:
        return False
    return compact[7:10] != "000" and compact[10:13] != "000"


def is_valid_ins_c(compact: str) -> bool:
    """Whether 22 digits form an INS-C: 20 digits then key = 97 - (number mod 97)."""
    if len(compact) != _INS_C_LENGTH or not compact.isascii() or not compact.isdigit():
        return False
    return 97 - int(compact[:20]) % 97 == int(compact[20:])


def _runs(folded: str) -> Iterator[list[str]]:
    """Runs of digit groups: groups split by separators, runs ended by letters.

    A Corsican `A`/`B` right after a `2` belongs to the group (department 2A/2B).
    """
    groups: list[str] = []
    group: list[str] = []
    for ch in folded:
        if "0" <= ch <= "9" or (ch in "AaBb" and group and group[-1] == "2"):
            group.append(ch)
            continue
        if group:
            groups.append("".join(group))
            group = []
        if ch.isalnum():  # a letter or a non-decimal number: the run is over
            if groups:
                yield groups
            groups = []
    if group:
        groups.append("".join(group))
    if groups:
        yield groups


def _spans(groups: list[str], length: int) -> Iterator[str]:
    """Every concatenation of consecutive whole groups that is exactly ``length`` long."""
    for start in range(len(groups)):
        total, end = "", start
        while end < len(groups) and len(total) < length:
            total += groups[end]
            end += 1
        if len(total) == length:
            yield total


def _run_kind(groups: list[str], keyless: bool) -> str | None:
    if any(is_valid_nir(span) for span in _spans(groups, _NIR_LENGTH)):
        return NIR_KIND
    whole = "".join(groups)
    if keyless and len(whole) == _NIR_WITHOUT_KEY and is_plausible_nir_without_key(whole):
        return NIR_KIND
    if any(is_valid_ins_c(span) for span in _spans(groups, _INS_C_LENGTH)):
        return INS_C_KIND
    return None


def find_patient_identifier(
    text: str, extra: tuple[NamedPattern, ...] = (), *, keyless: bool = True
) -> str | None:
    """Return the kind of the first patient identifier found in ``text``, or None.

    The returned string names the kind ("NIR / INS ...", or a configured pattern's
    name) so a refusal can tell the user what was recognised without repeating it.
    ``keyless=False`` skips the NIR-without-key rule: for JSON numbers, which are
    machine data (millisecond timestamps have 13 digits too), not something typed.
    """
    folded = normalise(text)
    for groups in _runs(folded):
        kind = _run_kind(groups, keyless)
        if kind is not None:
            return kind
    for pattern in extra:
        if pattern.regex.search(folded):
            return pattern.name
    return None
