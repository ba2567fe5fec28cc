"""The SavoirFaire companion file: each practitioner's specialty, looked up by national id.

Newer extracts leave the activity file's specialty columns empty (or drop them) and publish
specialties in a separate file keyed by `Identification nationale PP`. The index below is built
once per import, handed to the parser (and to each parsing process), and remembers which of
its identifiers the extract named: a SavoirFaire file naming practitioners the extract does
not know (another day's file, a cut extract) is reported, with the first of its lines, and the
import goes on (their specialties have nobody to go to). Pure: callers hand in lines.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable

from bridge.directory.rpps import (
    ExtractFormatError,
    column_positions,
    column_title,
    header_cells,
)

_REQUIRED = ("national_id", "specialty_code", "specialty")
_ID_BITS = 17
"""Low bits of a packed entry: rank (1 bit) and the choice of (code, label) (16 bits)."""


class SpecialtyIndex:
    """Specialty per practitioner from the SavoirFaire file, compactly held in memory.

    The file can hold a million entries; a dict of strings would take hundreds of megabytes, so
    numeric ids are packed with their (code, label) choice into one sorted array of 64-bit
    integers (8 bytes an entry) and found by bisection. An ordinal specialty (type "S") wins
    over other kinds of savoir-faire for the same practitioner.

    Each lookup marks the identifier as named by the extract (one byte per entry). Parsing
    processes hold copies: there, `track()` makes the index also list what it newly marked,
    `take_seen()` hands that over with each batch, and the importer's index `add_seen()`s it.
    """

    def __init__(self) -> None:
        self._choices: list[tuple[str, str]] = []
        self._packed = array("q")
        self._other: dict[str, int] = {}
        self._id_column = 0
        self._seen = bytearray()
        self._other_seen: set[str] = set()
        self._fresh: list[int] | None = None
        self._fresh_other: list[str] = []

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> SpecialtyIndex:
        """Build from the SavoirFaire file's lines (header first).

        Raises:
            ExtractFormatError: the header lacks a needed column (named).
        """
        index = cls()
        iterator = iter(lines)
        positions = column_positions(header_cells(next(iterator, "")))
        missing = [column_title(n) for n in _REQUIRED if n not in positions]
        if missing:
            names = ", ".join(f"“{m}”" for m in missing)
            raise ExtractFormatError(f"the SavoirFaire file's header has no column {names}")
        i_id, i_code, i_label = (positions[n] for n in _REQUIRED)
        index._id_column = i_id
        i_type = positions.get("specialty_type")
        choice_ids: dict[tuple[str, str], int] = {}
        packed: list[int] = []
        for line in iterator:
            cells = line.rstrip("\r\n").split("|")
            if len(cells) <= max(i_id, i_code, i_label):
                continue
            national_id, code = cells[i_id], cells[i_code]
            if not national_id or not code:
                continue
            pair = (code, cells[i_label])
            choice = choice_ids.get(pair)
            if choice is None:
                choice = choice_ids[pair] = len(index._choices)
                index._choices.append(pair)
            rank = 0 if i_type is None or cells[i_type] == "S" else 1
            value = (rank << 16) | choice
            if national_id.isdigit() and len(national_id) <= 13 and choice < 65536:
                packed.append((int(national_id) << _ID_BITS) | value)
            elif value < index._other.get(national_id, 1 << 20):
                index._other[national_id] = value
        packed.sort()
        index._packed = array("q", packed)
        index._seen = bytearray(len(packed))
        return index

    def __len__(self) -> int:
        return len(self._packed) + len(self._other)

    def _position(self, national_id: str) -> int:
        """Where the id's best entry sits in the packed array, or -1."""
        if national_id.isdigit() and len(national_id) <= 13:
            key = int(national_id) << _ID_BITS
            at = bisect.bisect_left(self._packed, key)
            if at < len(self._packed) and self._packed[at] >> _ID_BITS == key >> _ID_BITS:
                return at
        return -1

    def __call__(self, national_id: str) -> tuple[str, str] | None:
        """The id's specialty (code, label), if any; the id is marked as named by the extract."""
        at = self._position(national_id)
        if at >= 0:
            if not self._seen[at]:
                self._seen[at] = 1
                if self._fresh is not None:
                    self._fresh.append(at)
            return self._choices[self._packed[at] & 0xFFFF]
        value = self._other.get(national_id)
        if value is None:
            return None
        if national_id not in self._other_seen:
            self._other_seen.add(national_id)
            if self._fresh is not None:
                self._fresh_other.append(national_id)
        return self._choices[value & 0xFFFF]

    def track(self) -> None:
        """In a parsing process: list what lookups newly mark, for `take_seen`."""
        self._fresh, self._fresh_other = [], []

    def take_seen(self) -> tuple[list[int], list[str]]:
        """What was marked since the last call (`track` first), to send to the importer."""
        found = (self._fresh or [], self._fresh_other)
        self._fresh, self._fresh_other = [], []
        return found

    def add_seen(self, positions: Iterable[int], others: Iterable[str]) -> None:
        """Marks made by a parsing process's copy of this index."""
        for at in positions:
            self._seen[at] = 1
        self._other_seen.update(others)

    def unnamed_count(self) -> int:
        """How many of the file's identifiers no extract line named."""
        packed, seen = self._packed, self._seen
        count = len(self._other) - len(self._other_seen)
        previous = -1
        for at, value in enumerate(packed):
            ident = value >> _ID_BITS
            if ident != previous:  # an id's first entry is the one lookups land on
                previous = ident
                count += not seen[at]
        return count

    def unnamed_lines(self, lines: Iterable[str], limit: int) -> list[int]:
        """Line numbers (the header is line 1) of the first `limit` lines whose identifier no
        extract line named; `lines` are the file's lines after its header."""
        found: list[int] = []
        column = self._id_column
        for number, line in enumerate(lines, 2):
            cells = line.split("|", column + 1)
            if len(cells) <= column:
                continue
            national_id = cells[column]
            at = self._position(national_id)
            named = self._seen[at] if at >= 0 else national_id in self._other_seen
            if not named and (at >= 0 or national_id in self._other):
                found.append(number)
                if len(found) == limit:
                    break
        return found
