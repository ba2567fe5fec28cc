"""Patient identifiers are recognised in room names and topics, other numbers are not."""

from __future__ import annotations

import re

import pytest

from bridge.guard.identifiers import (
    INS_C_KIND,
    NIR_KIND,
    NamedPattern,
    find_patient_identifier,
    is_valid_ins_c,
    is_valid_nir,
    nir_key,
)


def with_key(first13: str) -> str:
    return f"{first13}{nir_key(first13):02d}"


# A man born in May 1985 in department 78, commune 006, order 084.
NIR = with_key("1850578006084")
CORSICA_2A = with_key("2690520A12345"[:5] + "2A" + "123456")
CORSICA_2B = with_key("1750" + "3" + "2B" + "050123")
NIA = with_key("7991299123456")  # waiting number for a person born abroad (dept 99)
OVERSEAS = with_key("2920597123045")  # born in Guadeloupe: department 971, commune 23
# A legacy INS-C computed from a Carte Vitale (20 digits and its key).
INS_C = "1541187387477485562488"


def _groups(number: str, sizes: tuple[int, ...], sep: str) -> str:
    parts, at = [], 0
    for size in sizes:
        parts.append(number[at : at + size])
        at += size
    return sep.join(parts)


def _digits(number: str, zero: int) -> str:
    return "".join(chr(zero + int(d)) for d in number)


# Every way of writing a keyed NIR that was once shown to slip through, and more of the
# same classes: any grouping, any separator, any decimal digits, invisible characters.
DISGUISED = [
    _groups(NIR, (3, 3, 3, 3, 3), " "),  # groups of three
    _groups(NIR, (3, 3, 3, 3, 3), "/"),
    _groups(NIR, (1, 2, 2, 2, 3, 3, 2), ","),
    _groups(NIR, (1, 2, 2, 2, 3, 3, 2), "\u00b7"),  # middle dot
    _groups(NIR, (1, 2, 2, 2, 3, 3, 2), "    "),  # four spaces
    _groups(NIR, (5, 5, 5), " - "),
    _groups(NIR, (1, 2, 2, 2, 3, 3, 2), "\n"),  # one group per line
    _groups(NIR, (4, 4, 4, 3), "\u3000"),  # ideographic space
    _digits(NIR, 0x0660),  # Arabic-Indic
    _digits(NIR, 0x06F0),  # extended Arabic-Indic (Persian)
    _digits(NIR, 0x0966),  # Devanagari
    _digits(NIR, 0x1D7CE),  # mathematical bold
    _groups(_digits(NIR, 0x0660), (3, 3, 3, 3, 3), " "),
    "\u034f".join(NIR),  # combining grapheme joiner
    "\ufe0f".join(NIR),  # variation selector
    "\U000e0100".join(NIR),  # variation selector supplement
    "\u3164".join(NIR),  # Hangul filler
    "\uffa0".join(NIR),  # half-width Hangul filler
    "\u2800".join(NIR),  # Braille blank
    "\u2060".join(NIR),  # word joiner
    "\u00ad".join(NIR),  # soft hyphen
    "\u0301".join(NIR),  # combining accent
    "".join(f"{d}\u20e3" for d in NIR),  # keycaps
    "".join(chr(0x2460 + int(d) - 1) if d != "0" else "0" for d in NIR),  # circled digits
    f"Mme X ({_groups(NIR, (3, 3, 3, 3, 3), '.')}) VIH+",
    f"tel 06 12 34 56 78 {_groups(NIR, (3, 3, 3, 3, 3), ' ')}",  # after a phone number
]


def test_key_is_97_minus_the_number_modulo_97() -> None:
    assert nir_key("1850578006084") == 97 - 1850578006084 % 97


def test_corsica_counts_2a_as_19_and_2b_as_18() -> None:
    assert nir_key("269052A123456") == 97 - 2690519123456 % 97
    assert nir_key("175032B050123") == 97 - 1750318050123 % 97
    assert nir_key("269052a123456") == nir_key("269052A123456")


@pytest.mark.parametrize("number", [NIR, CORSICA_2A, CORSICA_2B, NIA])
def test_valid_numbers_pass_the_structure_and_key_check(number: str) -> None:
    assert is_valid_nir(number)


@pytest.mark.parametrize(
    "number",
    [
        NIR[:13] + f"{(int(NIR[13:]) % 97) + 1:02d}",  # wrong key
        "5" + NIR[1:],  # sex digit 5 does not exist
        with_key("1851378006084"),  # month 13
        with_key("1850000006084"),  # department 00
        "185052C00608401",  # 2C is no department
        NIR[:14],  # too short
    ],
)
def test_malformed_numbers_are_not_nirs(number: str) -> None:
    assert not is_valid_nir(number)


@pytest.mark.parametrize(
    "text",
    [
        NIR,
        f"Dossier {NIR}",
        " ".join([NIR[0], NIR[1:3], NIR[3:5], NIR[5:7], NIR[7:10], NIR[10:13], NIR[13:]]),
        ".".join([NIR[0], NIR[1:3], NIR[3:5], NIR[5:7], NIR[7:10], NIR[10:13], NIR[13:]]),
        "-".join([NIR[0], NIR[1:3], NIR[3:5], NIR[5:7], NIR[7:10], NIR[10:13], NIR[13:]]),
        f"{NIR[:13]} {NIR[13:]}",  # key written apart
        f"NIR:{NIR}.",
        f"patient {CORSICA_2A} cardio",
        f"{CORSICA_2B[:5]} {CORSICA_2B[5:7].lower()} {CORSICA_2B[7:]}",
        f"INS {NIA}",
        f"{OVERSEAS[0]} {OVERSEAS[1:3]} {OVERSEAS[3:5]} {OVERSEAS[5:8]} {OVERSEAS[8:10]} "
        f"{OVERSEAS[10:13]} {OVERSEAS[13:]}",  # overseas grouping 1-2-2-3-2-3-2
        f"{NIR} 12 rue de la Paix",  # followed by a separate number
        NIR.translate(str.maketrans("0123456789", "０１２３４５６７８９")),  # full-width
        "\u200b".join(NIR),  # zero-width spaces between every digit
        f"1\u00a085\u00a005\u00a078\u00a0006\u00a0084\u00a0{NIR[13:]}",  # no-break spaces
        *DISGUISED,
    ],
)
def test_nir_and_ins_are_recognised_in_text(text: str) -> None:
    assert find_patient_identifier(text) == NIR_KIND


@pytest.mark.parametrize(
    "text",
    [
        "RCP cardiologie 12/03",
        "10003456789",  # RPPS number (11 digits)
        "Dr Martin RPPS 10101234567",
        "0612345678",  # phone
        "06 12 34 56 78",
        "+33 6 12 34 56 78",
        "01 23 45 67 89 / 06 12 34 56 78",  # two phones
        "FINESS 750712184",
        "2024-03-12 14:30",
        NIR[:13] + f"{(int(NIR[13:]) % 97) + 1:02d}",  # wrong key
        "9" + NIR,  # inside a longer run of digits
        NIR + "7",
        "",
    ],
)
def test_other_numbers_are_not_taken_for_patient_identifiers(text: str) -> None:
    assert find_patient_identifier(text) is None


@pytest.mark.timeout(120)  # a backtracking blow-up would run for hours, not seconds
def test_long_hostile_texts_get_an_answer() -> None:
    """A 64 KiB topic made of near-misses still gets an answer (linear scan, no blow-up); how
    fast is measured by `python -m tests.bench guard`, not here."""
    for text in ("1 " * 32000, "1 85 05 78 006 084 00 " * 2900, "7" * 65000, "١٢ " * 20000):
        assert find_patient_identifier(text) is None


# A NIR without its key: refused when it stands alone and looks like a NIR of someone born
# in France; other 13-digit numbers pass (see is_plausible_nir_without_key).
@pytest.mark.parametrize(
    "text",
    [NIR[:13], _groups(NIR[:13], (1, 2, 2, 2, 3, 3), " "), _digits(NIR[:13], 0x0660),
     f"Mme X {_groups(NIR[:13], (3, 3, 3, 4), '/')}", CORSICA_2A[:13]],
)  # fmt: skip
def test_a_nir_without_its_key_is_refused_when_it_stands_alone(text: str) -> None:
    assert find_patient_identifier(text) == NIR_KIND


@pytest.mark.parametrize(
    "text",
    [
        "3400930000000",  # CIP13 drug code
        "3017620422003",  # EAN-13 barcode (French products start with 3)
        "7" + NIR[1:13],  # temporary number without key: too rare, too ambiguous
        NIR[:3] + "45" + NIR[5:13],  # month 45 is never used
        NIR[:7] + "000" + NIR[10:13],  # commune 000
        "9" + NIR[:13],  # inside a longer number
        NIR[:13] + " 7",  # part of a longer run of digit groups
    ],
)
def test_other_13_digit_numbers_pass(text: str) -> None:
    assert find_patient_identifier(text) is None


# What doctors write that must never be taken for a patient identifier.
HONEST_NUMBERS = [
    "RPPS 10003456789",
    "10003456789 10009876543",  # two RPPS numbers
    "ADELI 751234567",
    "FINESS 750712184 / 690781810",
    "SIRET 123 456 789 00012",
    "SIRET 12345678900012",
    "SIREN 732 829 320",
    "+33 1 23 45 67 89",
    "0033 6 12 34 56 78",
    "06.12.34.56.78 ou 01.23.45.67.89",
    "le 12/03/2024 à 14h30, puis le 19/03/2024",
    "12/03/2024 14:30 - 13/03/2024 15:00",
    "2024-03-12T14:30:00Z",
    "amoxicilline 1 g x 3 / j pendant 7 j",
    "paracétamol 500 mg 4x/j, max 3000 mg/24h",
    "INR 2,5 ; Hb 12,4 g/dl ; plaquettes 250 000",
    "TA 120/80, FC 72, SpO2 98 %, T 37,8",
    "Cas 117",
    "chambre 1204, lit 2",
    "IBAN FR76 3000 6000 0112 3456 7890 189",
    "v1.163.2",
    "\U0001f44d",
    "\U0001f44d\U0001f3fd",
    "1\ufe0f\u20e3",
]


@pytest.mark.parametrize("text", HONEST_NUMBERS)
def test_what_doctors_write_passes(text: str) -> None:
    assert find_patient_identifier(text) is None


def test_legacy_ins_c_is_recognised_with_its_key() -> None:
    assert is_valid_ins_c(INS_C)
    assert find_patient_identifier(f"INS-C {INS_C}") == INS_C_KIND
    spaced = " ".join(INS_C[i : i + 3] for i in range(0, 22, 3))
    assert find_patient_identifier(_digits(INS_C, 0x0966)) == INS_C_KIND
    assert find_patient_identifier(spaced) == INS_C_KIND
    wrong = INS_C[:20] + f"{(int(INS_C[20:]) % 97) + 1:02d}"
    assert not is_valid_ins_c(wrong)
    assert find_patient_identifier(wrong) is None


def test_configured_patterns_name_what_they_found() -> None:
    ipp = NamedPattern("IPP (hospital patient number)", re.compile(r"IPP[ :]*[0-9]{8}"))
    assert find_patient_identifier("suivi IPP: 12345678", (ipp,)) == ipp.name
    assert find_patient_identifier("suivi IPP", (ipp,)) is None


def test_configured_patterns_see_folded_text() -> None:
    ipp = NamedPattern("IPP", re.compile(r"IPP[0-9]{8}"))
    assert find_patient_identifier("IPP\u200b12345678", (ipp,)) == "IPP"
