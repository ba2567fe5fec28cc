"""Parsing a large extract on several processor cores.

Parsing and gathering 2.2 million lines is pure Python and takes most of an import's time on
one core. For large files the importer hands batches of lines to worker processes, each
running the same pure code (`ExtractParser`, `Grouper`) and sending back practitioner rows
as text; the importer's process only reads the file, writes the rows to the spill and counts
errors. Batches are cut between two practitioners, so a practitioner's lines stay together.

Workers start from a clean interpreter (`forkserver`), never as a fork of the importer, which
runs database threads.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Executor, ProcessPoolExecutor

from bridge.directory.model import ParseError, ParseWarning
from bridge.directory.rows import Grouper, PractitionerRow
from bridge.directory.rpps import ExtractParser, Layout, SpecialtyIndex

BatchResult = tuple[list[PractitionerRow], list[ParseError], list[ParseWarning], list[str], int]
"""(rows, errors, warnings, new city keys, records) for one batch of lines."""

_parser: ExtractParser | None = None
_grouper: Grouper | None = None


def _start(layout: Layout, specialties: SpecialtyIndex | None) -> None:
    global _parser, _grouper
    _parser = ExtractParser(layout, specialties)
    _grouper = Grouper()


def parse_batch(lines: list[str], first_line_no: int) -> BatchResult:
    """In a worker: one batch of whole practitioners, parsed and gathered."""
    assert _parser is not None and _grouper is not None, "worker not started"
    records, errors, warnings = _parser.parse(lines, first_line_no)
    rows = _grouper.feed(records) + _grouper.flush()
    cities = list(_grouper.cities)
    _grouper.cities.clear()
    return rows, errors, warnings, cities, len(records)


def pool(workers: int, layout: Layout, specialties: SpecialtyIndex | None) -> Executor:
    context = multiprocessing.get_context("forkserver")
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_start,
        initargs=(layout, specialties),
    )


def cut_point(lines: list[str], rpps_column: int) -> int:
    """Where to end a batch so that the last practitioner's lines all go to the next one.

    Returns the index of the first line of the batch's last practitioner (0 when the whole
    batch is one practitioner: then the batch is kept whole).
    """

    def rpps(line: str) -> str:
        cells = line.split("|", rpps_column + 1)
        return cells[rpps_column] if len(cells) > rpps_column else ""

    last = rpps(lines[-1])
    at = len(lines) - 1
    while at > 0 and rpps(lines[at - 1]) == last:
        at -= 1
    return at
