"""Detection of patient identifiers in text that Matrix never encrypts.

Room names, topics and aliases travel in clear to every homeserver in a room and are
shown in notifications, room lists and directories. A doctor who names a case room
after a patient's social security number has published it; this module spots such
numbers so the guard can refuse the event.

What counts as a patient identifier here:

- the French NIR ("numéro de sécurité sociale", 13 characters + a 2-digit key), which
  is also the patient's INS (Identifiant National de Santé: the "matricule INS" is the
  patient's own NIR, or their NIA when they have no NIR yet). The NIA and the
  temporary NIR have the same shape and the same key, so one detector covers them;
- the legacy INS-C (INS "calculé", 20 digits + a 2-digit key, computed from the
  Carte Vitale between 2010 and 2020);
- any extra pattern the federation configures (e.g. a hospital's IPP format).

The key is checked (key = 97 - (number mod 97); Corsica's 2A/2B count as 19/18), so
RPPS numbers (11 digits), phone numbers (10 digits, leading 0) and dates are not
taken for patient numbers. Separators between the usual digit groups (spaces, dots,
dashes, underscores) are tolerated because people write "1 85 05 78 006 084 36".

Findings never carry the matched text: it must not end up in logs or error messages.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

NIR_KIND = "NIR / INS (French social security number)"
INS_C_KIND = "INS-C (legacy computed health identifier)"

# Characters people put between digit groups. NFKC turns no-break spaces into spaces.
_SEPARATOR_CHARS = " \t.-_" + "".join(map(chr, range(0x2010, 0x2016)))
_S = "[" + re.escape(_SEPARATOR_CHARS) + "]{0,3}"
_DROP_SEPARATORS = str.maketrans("", "", _SEPARATOR_CHARS)

# A NIR as people write it: "1 85 05 78 006 084 36" (Carte Vitale), overseas "1 85 05 971
# 23 084 36", or without separators. Separators are allowed only between those groups,
# which keeps the scan linear on long texts and keeps runs of small numbers (phone
# numbers, lists) from lining up into candidates. Not glued to further digits on either
# side: a number inside a longer run of digits is something else. The outer lookahead
# makes matches overlap, so a false start does not hide a real number.
_NIR_GROUPS = ("[1-478]", "[0-9]{2}", "[0-9]{2}", "(?:[0-9]{2}|2[AaBb])", "[0-9]", "[0-9]{2}",
               "[0-9]{3}", "[0-9]{2}")  # fmt: skip
_NIR_CANDIDATE = re.compile(r"(?<![0-9])(?=(" + _S.join(_NIR_GROUPS) + r")(?![0-9]))")
_INS_C_CANDIDATE = re.compile(r"(?<![0-9])[0-9]{22}(?![0-9])")


@dataclass(frozen=True)
class NamedPattern:
    """An extra identifier format configured by the federation."""

    name: str
    regex: re.Pattern[str]


def normalise(text: str) -> str:
    """Fold the text so look-alike characters cannot smuggle digits past the detectors.

    NFKC maps full-width and other compatibility digits to ASCII; format characters
    (zero-width spaces, joiners, direction marks) are dropped so they cannot split a
    number invisibly.
    """
    folded = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in folded if unicodedata.category(ch) != "Cf")


def nir_key(first13: str) -> int:
    """The control key of a NIR given its first 13 characters (Corsica 2A/2B allowed)."""
    dept = first13[5:7].upper()
    if dept == "2A":
        first13 = first13[:5] + "19" + first13[7:]
    elif dept == "2B":
        first13 = first13[:5] + "18" + first13[7:]
    return 97 - int(first13) % 97


def is_valid_nir(compact: str) -> bool:
    """Whether 15 characters without separators form a NIR/NIA with a correct key.

    Structure checked beyond the key: sex digit 1-4, 7 or 8; month 01-12 or 20-99
    (INSEE uses 20 and above for unknown or fictitious months); department 01-99, 2A or
    2B; everything else digits.
    """
    if len(compact) != 15 or compact[0] not in "123478":
        return False
    dept = compact[5:7].upper()
    body = compact[:5] + compact[7:]
    if not body.isascii() or not body.isdigit():
        return False
    if dept not in ("2A", "2B") and (not dept.isdigit() or dept == "00"):
        return False
    month = int(compact[3:5])
    if month == 0 or 13 <= month <= 19:
        return False
    return nir_key(compact[:13]) == int(compact[13:])


def is_valid_ins_c(compact: str) -> bool:
    """Whether 22 digits form an INS-C: 20 digits then key = 97 - (number mod 97)."""
    if len(compact) != 22 or not compact.isascii() or not compact.isdigit():
        return False
    return 97 - int(compact[:20]) % 97 == int(compact[20:])


def _compact(candidate: str) -> str:
    return candidate.translate(_DROP_SEPARATORS)


def find_patient_identifier(text: str, extra: tuple[NamedPattern, ...] = ()) -> str | None:
    """Return the kind of the first patient identifier found in ``text``, or None.

    The returned string names the kind ("NIR / INS ...", or a configured pattern's
    name) so a refusal can tell the user what was recognised without repeating it.
    """
    folded = normalise(text)
    for match in _NIR_CANDIDATE.finditer(folded):
        if is_valid_nir(_compact(match.group(1))):
            return NIR_KIND
    for match in _INS_C_CANDIDATE.finditer(folded):
        if is_valid_ins_c(match.group(0)):
            return INS_C_KIND
    for pattern in extra:
        if pattern.regex.search(folded):
            return pattern.name
    return None
