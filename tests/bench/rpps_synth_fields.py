"""How one synthetic practitioner and their activity lines are drawn (see `rpps_synth`).

Weights are rough figures of the real register: nurses and doctors dominate, general practice
is the largest specialty by far, doctors have more practices than others. Everything is drawn
from one seeded `random.Random`, in a fixed order, so a seed always gives the same bytes.
"""

from __future__ import annotations

import random
from bisect import bisect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Generic, TypeVar

from bridge.directory.vocabulary import DEPARTMENTS, PROFESSIONS, SPECIALTIES, fold
from tests.bench import rpps_synth_data as data

T = TypeVar("T")

HEADER_52: tuple[str, ...] = (
    "Type d'identifiant PP", "Identifiant PP", "Identification nationale PP",
    "Code civilité d'exercice", "Libellé civilité d'exercice", "Code civilité",
    "Libellé civilité", "Nom d'exercice", "Prénom d'exercice", "Code profession",
    "Libellé profession", "Code catégorie professionnelle", "Libellé catégorie professionnelle",
    "Code type savoir-faire", "Libellé type savoir-faire", "Code savoir-faire",
    "Libellé savoir-faire", "Code mode exercice", "Libellé mode exercice", "Numéro SIRET site",
    "Numéro SIREN site", "Numéro FINESS site", "Numéro FINESS établissement juridique",
    "Identifiant technique de la structure", "Raison sociale site", "Enseigne commerciale site",
    "Complément destinataire (coord. structure)",
    "Complément point géographique (coord. structure)", "Numéro Voie (coord. structure)",
    "Indice répétition voie (coord. structure)", "Code type de voie (coord. structure)",
    "Libellé type de voie (coord. structure)", "Libellé Voie (coord. structure)",
    "Mention distribution (coord. structure)", "Bureau cedex (coord. structure)",
    "Code postal (coord. structure)", "Code commune (coord. structure)",
    "Libellé commune (coord. structure)", "Code pays (coord. structure)",
    "Libellé pays (coord. structure)", "Téléphone (coord. structure)",
    "Téléphone 2 (coord. structure)", "Télécopie (coord. structure)",
    "Adresse e-mail (coord. structure)", "Code Département (structure)",
    "Libellé Département (structure)", "Ancien identifiant de la structure",
    "Autorité d'enregistrement", "Code secteur d'activité", "Libellé secteur d'activité",
    "Code section tableau pharmaciens", "Libellé section tableau pharmaciens",
)  # fmt: skip
HEADER_56 = (
    *HEADER_52,
    "Code fonction",
    "Libellé fonction",
    "Code genre d'activité",
    "Libellé genre d'activité",
)
ALT_HEADER_SPELLINGS = {
    "Libellé civilité d'exercice": "Libellé civilité exercice",
    "Code Département (structure)": "Code département (coord. structure)",
    "Libellé Département (structure)": "Libellé département (coord. structure)",
    **{c: c.replace("coord. structure", "coord. Structure") for c in HEADER_52 if "coord." in c},
}
SAVOIR_FAIRE_HEADER = (
    "Type d'identifiant PP", "Identifiant PP", "Identification nationale PP", "Nom d'exercice",
    "Prénom d'exercice", "Code profession", "Libellé profession",
    "Code catégorie professionnelle", "Libellé catégorie professionnelle",
    "Code type savoir-faire", "Libellé type savoir-faire", "Code savoir-faire",
    "Libellé savoir-faire",
)  # fmt: skip


_DOUBLED = {str(d): (d * 2 - 9 if d > 4 else d * 2) for d in range(10)}


def luhn_check_digit(body: str) -> str:
    """The digit that makes `body + digit` pass the Luhn check."""
    reverse = body[::-1]
    total = sum(_DOUBLED[c] for c in reverse[0::2]) + sum(map(int, reverse[1::2]))
    return str(-total % 10)


def luhn_valid(number: str) -> bool:
    return number.isdigit() and luhn_check_digit(number[:-1]) == number[-1]


@dataclass(frozen=True)
class FixedPractitioner:
    """A named person to put in the extract (demo doctors), with one activity line."""

    rpps: str
    last_name: str
    first_name: str
    sex: str  # "M" or "F"
    profession_code: str
    specialty_code: str  # "" for none
    insee: str  # commune of the practice, from rpps_synth_data
    mode: str = "L"


@dataclass
class Person:
    id_type: str
    id_pp: str
    prefix: str  # pre-joined columns 0..12
    specialty: str  # pre-joined columns 13..16 ("" when none)
    profession: str
    mode_weights: str
    activities: int
    last_name: str
    authority: str  # "CNOM/CNOM/CNOM"
    fixed: FixedPractitioner | None = None


class _Weighted(Generic[T]):
    """Weighted choice by bisection on cumulative weights: fast enough for millions of draws."""

    def __init__(self, rng: random.Random, items: Sequence[tuple[T, float]]) -> None:
        self._rng = rng
        self.values = [v for v, _ in items]
        self._cum = list(accumulate(w for _, w in items))
        self._total = self._cum[-1]

    def pick(self) -> T:
        return self.values[bisect(self._cum, self._rng.random() * self._total)]


def _pick(seq: Sequence[T], r: Callable[[], float]) -> T:
    """Uniform choice, cheaper than `Random.choice` (one float, no rejection sampling)."""
    return seq[int(r() * len(seq))]


# profession → (weight, share of ADELI numbers, share of women, lines-per-person weights)
_PROFESSION_MIX = {
    "60": (31.0, 0.25, 0.87, (80, 15, 4, 1)),
    "10": (25.0, 0.0, 0.50, (62, 25, 8, 3, 2)),
    "70": (8.0, 0.0, 0.50, (80, 15, 4, 1)),
    "21": (7.5, 0.0, 0.68, (85, 12, 3)),
    "40": (4.0, 0.0, 0.48, (80, 16, 4)),
    "50": (2.0, 0.0, 0.97, (80, 16, 4)),
    "91": (2.5, 1.0, 0.96, (85, 13, 2)),
    "28": (3.0, 1.0, 0.55, (90, 10)),
    "98": (3.0, 1.0, 0.70, (90, 10)),
    "80": (1.3, 0.5, 0.65, (85, 15)),
    "94": (1.3, 1.0, 0.87, (88, 12)),
    "96": (1.2, 1.0, 0.86, (88, 12)),
    "95": (1.1, 1.0, 0.92, (88, 12)),
    "86": (1.0, 1.0, 0.75, (95, 5)),
    "92": (0.5, 1.0, 0.90, (85, 15)),
    "26": (0.4, 1.0, 0.40, (80, 20)),
    "32": (0.1, 0.0, 0.45, (95, 5)),
    "83": (0.1, 1.0, 0.30, (95, 5)),
}
_DOCTOR_SPECIALTIES = {
    "SM54": 45.0, "SM42": 6.5, "SM02": 5.0, "SM40": 3.8, "SM44": 3.5, "SM04": 3.2, "SM38": 3.0,
    "SM20": 2.5, "SM15": 2.0, "SM24": 2.0, "SM25": 2.0, "SM59": 2.0, "SM41": 1.5, "SM39": 1.4,
    "SM08": 1.5, "SM32": 1.2, "SM18": 1.0, "SM19": 1.0, "SM30": 1.0, "SM16": 1.0, "SM48": 1.0,
    "SM14": 1.0, "SM05": 0.9, "SM03": 1.0, "SM27": 1.0, "SM29": 0.8, "SM01": 0.7, "SM12": 0.6,
    "SM49": 0.6, "SM43": 0.5, "SM46": 0.5, "SM36": 0.5, "SM45": 0.4, "SM61": 0.4, "SM21": 0.3,
    "SM28": 0.3, "SM58": 0.3, "SM10": 0.3, "SM53": 0.3, "SM26": 0.2, "SM57": 0.2, "SM60": 0.2,
    "SM31": 0.2, "SM11": 0.2, "SM13": 0.2, "SM09": 0.2, "SM07": 0.2, "SM50": 0.2, "SM34": 0.2,
    "SM62": 0.2, "SM73": 0.2, "SM74": 0.2, "SM17": 0.1, "SM72": 0.1, "SM63": 0.1, "": 2.0,
}  # fmt: skip
_OTHER_SPECIALTIES = {
    "40": {"": 95.0, "SCD01": 4.0, "SCD02": 1.0},
    "60": {"": 99.0, "SI01": 0.4, "SI04": 0.2, "SI06": 0.2, "SI07": 0.2},
}
_AUTHORITY = {"10": "CNOM", "21": "CNOP", "40": "CNOCD", "50": "CNOSF", "60": "ONI", "70": "CNOMK"}
_AUTHORITY |= {"80": "CNOPP"}
_MODES = {"L": "Libéral", "S": "Salarié", "B": "Bénévole"}
_MODE_MIX = {"10": "LLLLLLSSSSB", "60": "LLSSSSSSSB", "70": "LLLLLLLLS", "40": "LLLLLLLLLS"}
_SECTORS_L: tuple[tuple[str, str, int], ...] = (
    ("SA07", "Cabinet individuel", 55),
    ("SA08", "Cabinet de groupe", 35),
)
_SECTORS_L += (("SA09", "Exercice en société", 10),)
_SECTORS_S = (
    ("SA01", "Etablissement public de santé", 55),
    ("SA04", "Etablissement privé non PSPH", 15),
    ("SA03", "Etablissement privé PSPH", 8),
    ("SA05", "Centre de santé", 10),
    ("SA17", "Etablissement pour personnes âgées", 5),
    ("SA25", "Laboratoire de biologie médicale", 2),
)
_PHARMACY_SECTIONS = {
    "L": ("A", "Pharmacien titulaire d'officine"),
    "S": ("D", "Pharmacien adjoint"),
}
_SF_TYPE = "S|Spécialité ordinale"
_NO_PRACTICE = (
    "|" * 26
)  # 27 empty fields: mode (2), structure (7), address (8), place (6), contact (4)
_PHONE_AREA: dict[str, tuple[str, ...]] = {"1": ("75", "77", "78", "91", "92", "93", "94", "95")}
_PHONE_AREA |= {"2": ("14", "22", "29", "35", "44", "49", "50", "53", "56", "61", "72", "76", "85")}
_PHONE_AREA |= {
    "3": ("02", "08", "10", "51", "60", "54", "55", "57", "59", "62", "67", "68", "80", "88")
}
_PHONE_AREA |= {"4": ("04", "05", "06", "13", "2A", "2B", "26", "38", "69", "73", "74", "83", "84")}
_DOM_PHONES = {"971": "0590", "972": "0596", "973": "0594", "974": "0262", "976": "0269"}


def _phone_prefix(dept: str) -> str:
    if dept in _DOM_PHONES:
        return _DOM_PHONES[dept]
    for digit, depts in _PHONE_AREA.items():
        if dept in depts:
            return "0" + digit
    return "05"


class _Commune:
    __slots__ = (
        "city", "dept", "dept_name", "finess_prefix", "insee", "of_city", "phone", "postcodes",
        "upper",
    )  # fmt: skip

    def __init__(self, insee: str, name: str, postcodes: tuple[str, ...]) -> None:
        self.insee = insee
        self.city = name
        self.postcodes = postcodes
        self.dept = insee[:3] if insee.startswith("97") else insee[:2]
        self.dept_name = DEPARTMENTS[self.dept]
        base = name.split(" ")[0] if "Arrondissement" in name else name
        self.upper = fold(base).upper()
        self.of_city = ("D'" if self.upper[0] in "AEIOUY" else "DE ") + self.upper
        self.finess_prefix = self.dept[:2].replace("A", "0").replace("B", "0")
        self.phone = _phone_prefix(self.dept)


class LineFactory:
    """Draws practitioners and formats their activity lines (pre-joined column groups)."""

    def __init__(self, *, seed: int, variant: int, fixed: Sequence[FixedPractitioner]) -> None:
        self.rng = rng = random.Random(seed)
        self.variant = variant
        self._fixed = list(fixed)
        self._used = {f.rpps for f in fixed}
        self._counter = rng.randrange(100_000, 200_000)
        self._adeli: dict[str, int] = {}
        self.communes = [_Commune(i, n, p) for i, n, p, _ in data.communes()]
        self._by_insee = {c.insee: c for c in self.communes}
        self._commune = _Weighted(
            rng, [(c, w) for c, (*_, w) in zip(self.communes, data.communes(), strict=True)]
        )
        self._profession = _Weighted(rng, [(p, m[0]) for p, m in _PROFESSION_MIX.items()])
        self._doctor_sf = _Weighted(rng, list(_DOCTOR_SPECIALTIES.items()))
        self._other_sf = {p: _Weighted(rng, list(w.items())) for p, w in _OTHER_SPECIALTIES.items()}
        self._lines = {
            p: _Weighted(rng, [(i + 1, w) for i, w in enumerate(m[3])])
            for p, m in _PROFESSION_MIX.items()
        }
        self._sector_l = _Weighted(rng, [(f"{c}|{lab}", w) for c, lab, w in _SECTORS_L])
        self._sector_s = _Weighted(rng, [(f"{c}|{lab}", w) for c, lab, w in _SECTORS_S])
        self._street_type = _Weighted(rng, [(f"{c}|{lab}", w) for c, lab, w in data.STREET_TYPES])
        self._r = rng.random

    # --- people ----------------------------------------------------------------------------

    def _rpps(self) -> str:
        while True:
            self._counter += 1 + int(self._r() * 8)
            body = f"1{self._counter:09d}"
            rpps = body + luhn_check_digit(body)
            if rpps not in self._used:
                return rpps

    def _adeli_number(self, dept: str, profession: str) -> str:
        key = (dept if dept.isdigit() else "20")[:2] + profession[0]
        self._adeli[key] = self._adeli.get(key, self.rng.randrange(100, 900)) + 1
        body = f"{key}{self._adeli[key]:05d}"
        return body + luhn_check_digit(body)

    def next_practitioner(self) -> Person:
        if self._fixed:
            return self._fixed_person(self._fixed.pop(0))
        r = self._r
        profession = self._profession.pick()
        _, adeli_share, women, _ = _PROFESSION_MIX[profession]
        female = r() < women
        first = _pick(data.FEMALE_FIRST if female else data.MALE_FIRST, r)
        last = _pick(data.SURNAMES, r)
        if r() < 0.08:
            last = f"{last}-{_pick(data.SURNAMES, r)}"
        if profession == "10":
            specialty = self._doctor_sf.pick()
            title = "PR|Professeur" if r() < 0.04 else "DR|Docteur"
        else:
            picker = self._other_sf.get(profession)
            specialty = picker.pick() if picker else ""
            title = "DR|Docteur" if profession in ("40", "21") and r() < 0.8 else "|"
        if r() < adeli_share:
            id_type = "0"
            id_pp = self._adeli_number(_pick(self.communes, r).dept, profession)
        else:
            id_type, id_pp = "8", self._rpps()
        activities = self._lines[profession].pick()
        return self._person(
            id_type, id_pp, title, female, last, first, profession, specialty, activities
        )

    def _person(
        self,
        id_type: str,
        id_pp: str,
        title: str,
        female: bool,
        last: str,
        first: str,
        profession: str,
        specialty: str,
        activities: int,
        fixed: FixedPractitioner | None = None,
    ) -> Person:
        civility = "MME|Madame" if female else "M|Monsieur"
        category = "C|Civil" if fixed or self._r() < 0.98 else "M|Militaire"
        prefix = (
            f"{id_type}|{id_pp}|{id_type}{id_pp}|{title}|{civility}|{last}|{first}|"
            f"{profession}|{PROFESSIONS[profession]}|{category}"
        )
        sf = f"{_SF_TYPE}|{specialty}|{SPECIALTIES[specialty]}" if specialty else ""
        modes = _MODE_MIX.get(profession, "LLLLSSSSSS")
        authority = "ARS" if id_type == "0" else _AUTHORITY.get(profession, "ARS")
        authority = f"{authority}/{authority}/{authority}"
        return Person(
            id_type, id_pp, prefix, sf, profession, modes, activities, last, authority, fixed
        )

    def _fixed_person(self, f: FixedPractitioner) -> Person:
        title = "DR|Docteur" if f.profession_code in ("10", "40") else "|"
        return self._person(
            "8", f.rpps, title, f.sex == "F", f.last_name, f.first_name,
            f.profession_code, f.specialty_code, 1, f,
        )  # fmt: skip

    def savoir_faire_line(self, p: Person) -> str:
        names = p.prefix.split("|")  # once per practitioner
        ident = "|".join(names[0:3])
        rest = "|".join(names[7:13])
        return f"{ident}|{rest}|{p.specialty}|\n"

    # --- activity lines --------------------------------------------------------------------

    def activity_lines(self, p: Person, *, specialty_columns: str = "inline") -> Iterator[str]:
        """Lines of one practitioner; `specialty_columns` is "inline", "empty" or "absent"."""
        if specialty_columns == "absent":
            specialty = ""
        elif specialty_columns == "inline" and p.specialty:
            specialty = p.specialty + "|"
        else:
            specialty = "||||"
        home: _Commune | None = None
        for n in range(p.activities):
            if p.fixed is not None:
                commune, mode = self._by_insee[p.fixed.insee], p.fixed.mode
            else:
                mode = _pick(p.mode_weights, self._r)
                reuse = home is not None and self._r() < 0.5
                commune = home if reuse and home else self._commune.pick()
            home = home or commune
            tail = self._structure(p, n, mode, commune)
            yield f"{p.prefix}|{specialty}{tail}|\n"

    def _structure(self, p: Person, n: int, mode: str, c: _Commune) -> str:
        """Columns 17.. of one line: mode, structure, address, contact, registration, extras.

        Each group holds a fixed number of fields joined by `|`, without outer separators.
        """
        r = self._r
        fixed = p.fixed is not None
        if not fixed and r() < 0.025:  # registered, no declared practice
            return _NO_PRACTICE + "|" + self._registration(p, "", "", "|")
        sector = self._sector(p, mode)
        if mode == "L":
            siret = str(10**13 + int(r() * 9 * 10**13)) if r() < 0.6 else ""
            name = (
                f"CABINET DR {p.last_name}"
                if p.profession in ("10", "40")
                else f"CABINET {p.last_name}"
            )
            if p.profession == "21":
                name = f"PHARMACIE {_pick(data.STREETS, r)}"
            structure = f"{siret}|{siret[:9]}|||C{p.id_pp}{n:02d}|{name}|"
        else:
            finess = f"{c.finess_prefix}{int(r() * 10**7):07d}"
            name = (
                f"CENTRE HOSPITALIER {c.of_city}"
                if sector.startswith(("SA01", "SA03"))
                else f"CLINIQUE {_pick(data.STREETS, r)}"
            )
            structure = f"||{finess}|{finess[:2]}0{finess[3:]}|F{finess}|{name}|"
        number = str(1 + int(r() * 159)) if r() < 0.85 else ""
        repeat = "B" if r() < 0.03 else ""
        street = _pick(data.STREETS, r)
        address = f"||{number}|{repeat}|{self._street_type.pick()}|{street}|"
        postcode = c.postcodes[0] if fixed else _pick(c.postcodes, r)
        shape = 0.0 if fixed else r()
        dept, dept_name = c.dept, c.dept_name
        if shape < 0.72:
            place = f"{postcode} {c.upper}|{postcode}|{c.insee}|{c.city}||"
        elif shape < 0.92:  # commune left empty: the city only lives in `Bureau cedex`
            place = f"{postcode} {c.upper}|{postcode}||||"
        elif shape < 0.997:  # not even a postcode
            place = f"{postcode} {c.upper}|||||"
            if r() < 0.5:
                dept, dept_name = "", ""
        else:
            country, label, town = _pick(data.FOREIGN, r)
            place = f"{town}||||{country}|{label}"
            dept, dept_name = "", ""
        contact = f"{c.phone}{int(r() * 10**8):08d}|||" if r() < 0.35 else "|||"
        registration = self._registration(p, dept, dept_name, sector)
        return f"{mode}|{_MODES[mode]}|{structure}|{address}|{place}|{contact}|{registration}"

    def _sector(self, p: Person, mode: str) -> str:
        """`Code|Libellé secteur d'activité` for one activity."""
        if p.profession == "21" and mode == "L":
            return "SA33|Pharmacie d'officine"
        if mode == "L":
            return self._sector_l.pick()
        if mode == "B":
            return "SA28|Association ou organisme humanitaire"
        return self._sector_s.pick()

    def _registration(self, p: Person, dept: str, dept_name: str, sector: str) -> str:
        """Columns 44..51 (+ 52..55): department, authority, sector, pharmacists' section."""
        section = "|"
        if p.profession == "21" and sector != "|":
            section = _PHARMACY_SECTIONS.get(sector[:4], "D|Pharmacien adjoint")
        # 8 fields: department (2), former id, authority, sector (2), section (2)
        line = f"{dept}|{dept_name}||{p.authority}|{sector}|{section}"
        if self.variant == 56:
            if sector == "|":
                return line + "||||"
            if sector.startswith(("SA07", "SA08", "SA09")) and self._r() < 0.6:
                line += "|FON-01|Titulaire de cabinet"
            else:
                line += "|FON-AU|Fonction non définie"
            line += "|GENR01|Activité de soin et de pharmacie"
        return line
