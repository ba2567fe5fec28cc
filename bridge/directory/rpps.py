"""Reading the register's "Personne_activite" extract (and its SavoirFaire companion), purely.

The extract is a `|`-separated UTF-8 text file, one line per activity, whose header changed over
the years (52 or 56 columns, capitalisation and wording variants, specialty columns sometimes
moved to the SavoirFaire file). Columns are therefore found by *normalised name*, never by
position, and a missing required column is named in the error.

Nothing here opens files: callers hand in lines (see `bridge.directory.sources`). Lines are
parsed in batches into plain tuples in `PractitionerRecord` field order (`RecordRow`), because
the importer goes through 2.2 million of them and an object per line would cost seconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from operator import itemgetter
from typing import IO, TYPE_CHECKING, Any, AnyStr, TextIO

from bridge.directory.model import ParseError, ParseWarning, PractitionerRecord, RecordRow
from bridge.directory.rows import FIELD_SEP
from bridge.directory.vocabulary import DEPARTMENTS, department_for_postcode, fold

if TYPE_CHECKING:
    from bridge.directory.rows import Grouper, PractitionerRow

RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(PractitionerRecord))

SpecialtyLookup = Callable[[str], "tuple[str, str] | None"]
"""National id (`Identification nationale PP`) → (specialty code, label)."""


class ExtractFormatError(Exception):
    """The file is not a register extract this code can read; the message says why."""


_DROPPED_WORDS = frozenset({"d", "de", "du", "des", "l", "la", "le", "coord"})


def normalise_column(name: str) -> str:
    """The comparable form of a header cell: folded, punctuation and filler words dropped.

    "Code Département (structure)" and "Code département (coord. structure)" both give
    "code departement structure"; "Libellé civilité d'exercice" and "Libellé civilité
    exercice" both give "libelle civilite exercice".
    """
    return " ".join(w for w in fold(name).split() if w not in _DROPPED_WORDS)


# Logical column → its header name as published (first = the name shown in errors).
_COLUMNS: dict[str, str] = {
    "id_type": "Type d'identifiant PP",
    "rpps": "Identifiant PP",
    "national_id": "Identification nationale PP",
    "last_name": "Nom d'exercice",
    "first_name": "Prénom d'exercice",
    "title": "Libellé civilité d'exercice",
    "profession_code": "Code profession",
    "profession": "Libellé profession",
    "specialty_type": "Code type savoir-faire",
    "specialty_code": "Code savoir-faire",
    "specialty": "Libellé savoir-faire",
    "mode": "Libellé mode exercice",
    "organisation": "Raison sociale site",
    "cedex": "Bureau cedex (coord. structure)",
    "postcode": "Code postal (coord. structure)",
    "city": "Libellé commune (coord. structure)",
    "country_code": "Code pays (coord. structure)",
    "country": "Libellé pays (coord. structure)",
    "department_code": "Code Département (structure)",
    "department": "Libellé Département (structure)",
}
_REQUIRED = (
    "id_type",
    "rpps",
    "last_name",
    "first_name",
    "profession_code",
    "profession",
    "postcode",
    "city",
)
_SPECIALTY_COLUMNS = ("specialty_code", "specialty")
_NORMALISED = {normalise_column(v): k for k, v in _COLUMNS.items()}
# Picked from each line in this order by one itemgetter call.
_PICK = (
    "id_type",
    "rpps",
    "last_name",
    "first_name",
    "title",
    "profession_code",
    "profession",
    "specialty_code",
    "specialty",
    "mode",
    "organisation",
    "postcode",
    "city",
    "department_code",
    "department",
    "country_code",
    "country",
    "cedex",
    "national_id",
)

MAX_LINE_CHARS = 20_000
"""A register line is a few hundred characters; anything this long is a broken file."""
_FRANCE_CODES = frozenset({"", "99100"})
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
_CONTROL_IN_FIELD = re.compile(r"[\x00-\x1f\x7f]")


def clean_field(value: str) -> str:
    """A field with its control characters (line breaks, tabs, the separators the directory
    stores rows with) turned into spaces: a name is never allowed to cut a stored row."""
    return _CONTROL_IN_FIELD.sub(" ", value) if _CONTROL_IN_FIELD.search(value) else value


_CONTROLS_BUT_NEWLINE = tuple(chr(c) for c in (*range(0x0A), *range(0x0B, 0x20), 0x7F))


def text_lines(block: str) -> list[str]:
    """The lines of a block of whole lines (each ended by "\n"), their control characters
    turned into spaces (see `clean_field`). A clean register pays nothing per line: the
    block is searched once for each control character, a substring search at memory speed
    (a regular expression's character class over the same block cost ten times more, a
    tenth of the parsing)."""
    if any(control in block for control in _CONTROLS_BUT_NEWLINE):
        block = _CONTROL_IN_TEXT.sub(" ", block)
    lines = block.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


_DIGIT_DOUBLED = bytes.maketrans(b"0123456789", b"0246813579")


def luhn_ok(number: str) -> bool:
    """Whether a string of digits passes the Luhn check (the RPPS's last digit seems to be one).

    Written for speed (it runs once per practitioner of the register): every other digit,
    from the right, is replaced by the digit sum of its double, then all digits are summed.
    """
    digits = number.encode()
    total = sum(digits[-1::-2]) + sum(digits[-2::-2].translate(_DIGIT_DOUBLED))
    return (total - 48 * len(digits)) % 10 == 0


def _split_cedex(cedex: str) -> tuple[str, str]:
    """ "75015 PARIS" → ("75015", "PARIS"); the postcode is "" when the text has none."""
    head, _, rest = cedex.strip().partition(" ")
    if len(head) == 5 and head.isdigit():
        return head, rest.strip()
    return "", cedex.strip()


@dataclass(frozen=True, slots=True)
class Layout:
    """Where each needed column sits in one extract's header."""

    columns: int
    positions: dict[str, int]
    has_specialty: bool

    @property
    def has_national_id(self) -> bool:
        return "national_id" in self.positions


def header_cells(header: str) -> list[str]:
    """The cells of a header line (BOM, line end and the trailing empty cell dropped)."""
    cells = header.lstrip("\ufeff").rstrip("\r\n").split("|")
    if cells and cells[-1] == "":
        cells.pop()
    return cells


def column_positions(cells: Sequence[str]) -> dict[str, int]:
    """Logical column (`national_id`, `specialty_code`, ...) → its index, first one wins."""
    positions: dict[str, int] = {}
    for index, cell in enumerate(cells):
        logical = _NORMALISED.get(normalise_column(cell))
        if logical is not None and logical not in positions:
            positions[logical] = index
    return positions


def column_title(logical: str) -> str:
    """The register's name of a logical column, as errors show it."""
    return _COLUMNS[logical]


def read_header(header: str) -> Layout:
    """Locate the needed columns in the extract's first line.

    Raises:
        ExtractFormatError: a required column is missing (named as the register names it).
    """
    cells = header_cells(header)
    positions = column_positions(cells)
    missing = [_COLUMNS[name] for name in _REQUIRED if name not in positions]
    if len(missing) == len(_REQUIRED):
        raise ExtractFormatError(
            "line 1 is not the header of a register extract (Personne_activite): "
            "no column is named as expected, e.g. “Identifiant PP”"
        )
    if missing:
        names = ", ".join(f"“{m}”" for m in missing)
        raise ExtractFormatError(f"the extract's header (line 1) has no column {names}")
    has_specialty = all(c in positions for c in _SPECIALTY_COLUMNS)
    return Layout(len(cells), positions, has_specialty)


class ExtractParser:
    """Turns batches of extract lines into record rows, errors and warnings.

    Args:
        layout: from `read_header`.
        specialties: where specialties come from when the extract has no specialty columns,
            or leaves them empty (the SavoirFaire file, see `SpecialtyIndex`).
    """

    def __init__(self, layout: Layout, specialties: SpecialtyLookup | None = None) -> None:
        self.layout = layout
        absent = layout.columns  # index of the always-empty cell after the trailing '|'
        self._pick = itemgetter(*(layout.positions.get(name, absent) for name in _PICK))
        self._specialties = specialties
        self._last_checked = ""
        self._specialty: tuple[str, str] | None = None
        self._departments: dict[str, str] = {}

    def _department(self, postcode: str) -> str:
        code = self._departments.get(postcode)
        if code is None:
            code = self._departments[postcode] = department_for_postcode(postcode)
        return code

    def parse_text(
        self, block: str, first_line_no: int
    ) -> tuple[list[RecordRow], list[ParseError], list[ParseWarning]]:
        """Parse a block of whole lines (see `read_blocks`); `first_line_no` is the file line
        number of its first line."""
        return self.parse(text_lines(block), first_line_no)

    def parse(
        self, lines: Sequence[str], first_line_no: int
    ) -> tuple[list[RecordRow], list[ParseError], list[ParseWarning]]:
        """Parse consecutive lines, already cleaned (`text_lines`); `first_line_no` is the
        file line number of `lines[0]`."""
        rows: list[RecordRow] = []
        _, errors, warnings = self._read(lines, first_line_no, rows, None)
        return rows, errors, warnings

    def gather_text(
        self, block: str, first_line_no: int, grouper: Grouper
    ) -> tuple[list[PractitionerRow], int, list[ParseError], list[ParseWarning]]:
        """Parse a block of whole lines straight into `grouper`: the practitioners it
        completed, the number of records read, errors and warnings (as `parse_text`)."""
        done: list[PractitionerRow] = []
        records, errors, warnings = self._read(text_lines(block), first_line_no, done, grouper)
        return done, records, errors, warnings

    def _read(
        self,
        lines: Sequence[str],
        first_line_no: int,
        out: list[Any],
        grouper: Grouper | None,
    ) -> tuple[int, list[ParseError], list[ParseWarning]]:
        """The one loop over an extract's lines: record rows into `out` without `grouper`;
        with it, the lines of each practitioner gathered as `Grouper.feed` gathers record
        rows (same state, same memos), straight from the line's fields. On the whole
        register this loop runs 2.2 million times: a record row per line, built here and
        taken apart there, was a fifth of the parsing processes' time."""
        errors: list[ParseError] = []
        warnings: list[ParseWarning] = []
        width = self.layout.columns
        pick = self._pick
        lookup = self._specialties
        line_no = first_line_no - 1
        records = 0
        if grouper is not None:
            places, kinds = grouper.places, grouper.kinds
            current, head, activities, tokens = grouper.current
        for line in lines:
            line_no += 1
            if len(line) > MAX_LINE_CHARS:
                errors.append(
                    ParseError(line_no, f"line of {len(line):,} characters, not a register line")
                )
                continue
            cells = line.rstrip("\r\n").split("|")
            if len(cells) != width + 1:
                if len(cells) == width:
                    cells.append("")
                elif len(cells) == 1 and not cells[0].strip():
                    continue  # blank line (often the last one)
                else:
                    errors.append(
                        ParseError(
                            line_no, f"expected {width} fields separated by '|', found {len(cells)}"
                        )
                    )
                    continue
            (
                id_type,
                rpps,
                last,
                first,
                title,
                prof_code,
                prof,
                spec_code,
                spec,
                mode,
                org,
                postcode,
                city,
                dept,
                dept_label,
                country_code,
                country,
                cedex,
                national_id,
            ) = pick(cells)
            if not rpps.isdigit():
                message = "empty “Identifiant PP”" if not rpps else f"“Identifiant PP” {rpps!r}"
                errors.append(ParseError(line_no, message + " is not a number"))
                continue
            if not last:
                errors.append(ParseError(line_no, "empty “Nom d'exercice”"))
                continue
            if "\ufffd" in line:
                errors.append(ParseError(line_no, "not valid UTF-8 text"))
                continue
            if rpps != self._last_checked:
                self._last_checked = rpps
                if id_type == "8" and (len(rpps) != 11 or not luhn_ok(rpps)):
                    warnings.append(
                        ParseWarning(line_no, f"RPPS {rpps} fails its check digit (imported)")
                    )
                # Once per practitioner, whatever the specialty columns hold: the lookup
                # also tells the SavoirFaire index that the extract names this identifier.
                if lookup is not None:
                    self._specialty = lookup(national_id)
            if not spec_code and self._specialty is not None:
                spec_code, spec = self._specialty
            if not city or not postcode:
                cedex_postcode, cedex_city = _split_cedex(cedex)
                postcode = postcode or cedex_postcode
                city = city or cedex_city
            if not dept:
                dept = self._department(postcode)
            if not dept_label and dept:
                dept_label = DEPARTMENTS.get(dept, "")
            if country_code in _FRANCE_CODES:
                country = ""
            records += 1
            if grouper is None:
                out.append(
                    (
                        rpps,
                        id_type,
                        last,
                        first,
                        title,
                        prof_code,
                        prof,
                        spec_code,
                        spec,
                        mode,
                        org,
                        postcode,
                        city,
                        dept,
                        dept_label,
                        country,
                    )
                )
                continue
            # What `Grouper.feed` does with the record row this line would have been.
            activity = FIELD_SEP.join(
                (spec_code, spec, mode, org, postcode, city, dept, dept_label, country)
            )
            if rpps != current:
                if current:
                    out.append(grouper.finish(head, activities, tokens))
                current = rpps
                head = (rpps, id_type, last, first, title, prof_code, prof)
                activities = [activity]
                tokens = []
            elif activity in activities:
                continue
            else:
                activities.append(activity)
            place = places.get((postcode, city, dept))
            if place is None:
                place = grouper.place(postcode, city, dept)
            kind = kinds.get((prof_code, spec_code))
            if kind is None:
                kind = grouper.kind(prof_code, spec_code)
            tokens.append(kind)
            tokens.append(place)
        if grouper is not None:
            grouper.current = (current, head, activities, tokens)
        return records, errors, warnings


BLOCK_CHARS = 4_000_000
"""About 13 000 register lines: what `read_blocks` hands out at a time."""


def read_blocks(text: TextIO, size: int = BLOCK_CHARS) -> Iterator[str]:
    """The text in blocks of whole lines, each line ended by "\n".

    Lines end where iterating the file would end them (the file is opened with
    ``newline=""``): at "\n", "\r\n" or a lone "\r". Reading blocks instead of lines keeps
    the importer's process out of the per-line work: 2.2 million lines are a few hundred
    reads. A line longer than a block is gathered whole (the parser then refuses it).
    """
    return _blocks(text.read, size, "\r", "\n")


def read_byte_blocks(raw: IO[bytes], size: int = BLOCK_CHARS) -> Iterator[bytes]:
    """`read_blocks` for a file's undecoded bytes (UTF-8 or Windows-1252: in both, a line
    end is the bytes "\r" and "\n" and nothing else), so that a block decodes to what
    `read_blocks` gives for the same lines: for processes that decode their own share."""
    return _blocks(raw.read, size, b"\r", b"\n")


def _blocks(read: Callable[[int], AnyStr], size: int, cr: AnyStr, lf: AnyStr) -> Iterator[AnyStr]:
    pieces: list[AnyStr] = []
    while chunk := read(size):
        if chunk.endswith(cr):
            chunk += read(1)  # a "\r\n" cut between two reads is one line end
        if cr in chunk:
            chunk = chunk.replace(cr + lf, lf).replace(cr, lf)
        end = chunk.rfind(lf) + 1
        if not end:
            pieces.append(chunk)
            continue
        pieces.append(chunk[:end])
        yield lf[:0].join(pieces)
        pieces = [chunk[end:]] if end < len(chunk) else []
    rest = lf[:0].join(pieces)
    if rest:
        yield rest + lf


def iter_records(
    lines: Iterable[str], specialties: SpecialtyLookup | None = None
) -> Iterator[PractitionerRecord | ParseError | ParseWarning]:
    """Records, errors and warnings of a whole extract, in file order (header included).

    Raises:
        ExtractFormatError: the header is not an extract's.
    """
    iterator = iter(lines)
    header = next(iterator, None)
    if header is None:
        raise ExtractFormatError("the file is empty")
    parser = ExtractParser(read_header(header), specialties)
    line_no = 2
    for line in iterator:
        rows, errors, warnings = parser.parse_text(line.rstrip("\r\n") + "\n", line_no)
        yield from errors
        yield from warnings
        for row in rows:
            yield PractitionerRecord(*row)  # type: ignore[arg-type]
        line_no += 1
