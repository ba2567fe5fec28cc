"""Reading an import's file into the staging generation, batch by batch.

An RPPS extract is parsed here, or for large files in worker processes (`parallel`), while the
previous batch is written; FHIR files go through their own parser into the same batches. What
the file says beyond its rows (lines under several names, SavoirFaire identifiers the extract
lacks) comes back as warnings with line numbers, found by reading again only when needed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, TextIO

from bridge.directory import parallel
from bridge.directory.duplicates import first_lines, merge_warnings
from bridge.directory.generations import Generation
from bridge.directory.import_tally import (
    SHOWN_LINES,
    DirectoryImportError,
    ImportProgress,
    Tally,
)
from bridge.directory.model import ParseError, ParseWarning, PractitionerRecord, RecordRow
from bridge.directory.rows import Grouper, PractitionerRow
from bridge.directory.rpps import (
    BLOCK_CHARS,
    RECORD_FIELDS,
    ExtractFormatError,
    ExtractParser,
    Layout,
    clean_field,
    read_blocks,
    read_byte_blocks,
    read_header,
)
from bridge.directory.savoir_faire import SpecialtyIndex
from bridge.directory.sources import (
    Source,
    decoded,
    open_activity,
    open_activity_bytes,
    open_savoir_faire,
)
from bridge.directory.spill import Merged, bucketed

logger = logging.getLogger(__name__)

MAX_WORKERS = 4
PARALLEL_MIN_CHARS = 50_000_000
"""Smaller files are parsed in the importer's process: starting workers would cost more."""


Batch = tuple[list[RecordRow], list[ParseError], list[ParseWarning]]


def batches_of_records(
    items: Iterable[PractitionerRecord | ParseError | ParseWarning],
) -> Iterator[Batch]:
    """FHIR items in the same batch shape as the text parser's."""
    getters = RECORD_FIELDS
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, 2000)):
        rows: list[RecordRow] = []
        errors: list[ParseError] = []
        warnings: list[ParseWarning] = []
        for item in chunk:
            if isinstance(item, PractitionerRecord):
                rows.append(tuple(clean_field(getattr(item, name)) for name in getters))
            elif isinstance(item, ParseError):
                errors.append(item)
            else:
                warnings.append(item)
        yield rows, errors, warnings


class _Writer:
    """Keeps one staging write in flight while the next batch is parsed."""

    def __init__(self, generation: Generation) -> None:
        self._generation = generation
        self._pending: asyncio.Task[None] | None = None

    async def write(self, rows: list[PractitionerRow]) -> None:
        await self.drain()
        if rows:
            self._pending = asyncio.ensure_future(self._generation.add(bucketed(rows)))

    async def drain(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending


async def load_extract(
    source: Source,
    generation: Generation,
    grouper: Grouper,
    tally: Tally,
    progress: ImportProgress | None,
) -> None:
    specialties = None
    with open_activity_bytes(source) as (raw, encoding):
        text = decoded(raw, encoding)
        header = text.readline()
        if not header.strip():
            raise DirectoryImportError(f"{source.path.name}: the file is empty")
        try:
            layout = read_header(header)
        except ExtractFormatError as exc:
            raise DirectoryImportError(f"{source.path.name}: {exc}") from None
        if text.encoding != "utf-8":
            tally.note([ParseWarning(1, f"the file is not UTF-8 text: read as {text.encoding}")])
        specialties = _load_savoir_faire(source, needed=not layout.has_specialty)
        if progress is not None:
            progress.started(source.size)
        workers = min(MAX_WORKERS, os.cpu_count() or 1)
        if (source.size or 0) >= PARALLEL_MIN_CHARS and workers > 1:
            # The workers decode their own blocks: the same open file, read again from its
            # start as bytes (never reopened: a file replaced meanwhile cannot mix in).
            text.detach()
            raw.seek(0)
            await _load_in_workers(
                raw, encoding, layout, specialties, workers, generation, grouper, tally, progress
            )
        else:
            await _load_here(
                text, header, layout, specialties, generation, grouper, tally, progress
            )
    if specialties is not None:
        tally.note_first(_unnamed_warnings(source, specialties))


async def _load_here(
    text: TextIO,
    header: str,
    layout: Layout,
    specialties: SpecialtyIndex | None,
    generation: Generation,
    grouper: Grouper,
    tally: Tally,
    progress: ImportProgress | None,
) -> None:
    """Parse and gather in the importer's process (smaller files)."""
    parser = ExtractParser(layout, specialties)
    writer = _Writer(generation)
    done = len(header)
    line_no = 2
    try:
        for block in read_blocks(text, BLOCK_CHARS):
            gathered, records, errors, warnings = parser.gather_text(block, line_no, grouper)
            lines = block.count("\n")
            line_no += lines
            tally.lines += lines
            tally.records += records
            tally.count(errors, warnings)
            await writer.write(gathered)
            if progress is not None:
                done += len(block)
                progress.advanced(done, tally.lines)
        await writer.write(grouper.flush())
    finally:
        await writer.drain()


async def _load_in_workers(
    raw: IO[bytes],
    encoding: str,
    layout: Layout,
    specialties: SpecialtyIndex | None,
    workers: int,
    generation: Generation,
    grouper: Grouper,
    tally: Tally,
    progress: ImportProgress | None,
) -> None:
    """The same as the single-process loop, with parsing in worker processes (`parallel`),
    from the file's start: its header line, read already, is skipped here."""
    loop = asyncio.get_running_loop()
    rpps_column = layout.positions["rpps"]
    in_flight: deque[asyncio.Future[parallel.BatchResult]] = deque()
    done = 0
    line_no = 2
    carried = b""
    header = True

    async def collect() -> None:
        rows, errors, warnings, learnt, records, named = await in_flight.popleft()
        tally.records += records
        tally.count(errors, warnings)
        grouper.vocabulary.update(learnt)
        if specialties is not None:
            specialties.add_seen(*named)
        generation.added(rows)

    def send(batch: bytes) -> None:
        nonlocal line_no
        in_flight.append(loop.run_in_executor(executor, parallel.parse_block, batch, line_no))
        lines = batch.count(b"\n")
        line_no += lines
        tally.lines += lines

    with parallel.pool(workers, layout, specialties, generation.spill_folder, encoding) as executor:
        try:
            for block in read_byte_blocks(raw, BLOCK_CHARS):
                done += len(block)
                if header:
                    block, header = block[block.index(b"\n") + 1 :], False
                batch = carried + block
                cut = parallel.cut_point(batch, rpps_column) if batch else 0
                batch, carried = (batch[:cut], batch[cut:]) if cut else (batch, b"")
                if batch:
                    send(batch)
                if len(in_flight) > workers:
                    await collect()
                if progress is not None:
                    progress.advanced(done, tally.lines)
            if carried:
                send(carried)
            while in_flight:
                await collect()
        finally:
            for future in in_flight:
                future.cancel()


def merge_warnings_for(source: Source, merged: Sequence[Merged]) -> list[ParseWarning]:
    """The warnings for identifiers found under several names, with their line numbers."""
    if source.kind != "rpps":
        return merge_warnings(merged)
    with open_activity(source) as text:
        layout = read_header(text.readline())
        lines = first_lines(text, layout, {m.rpps for m in merged})
    return merge_warnings(merged, lines)


def _unnamed_warnings(source: Source, specialties: SpecialtyIndex) -> list[ParseWarning]:
    """A warning when the SavoirFaire file names identifiers the extract does not have (their
    specialties are unused; the import goes on), with the first such lines of that file."""
    count = specialties.unnamed_count()
    if not count:
        return []
    lines: list[int] = []
    with open_savoir_faire(source) as text:
        if text is not None:
            text.readline()
            lines = specialties.unnamed_lines(text, SHOWN_LINES)
    name = source.savoir_faire.name if source.savoir_faire else source.savoir_faire_member
    where = ", ".join(map(str, lines))
    return [
        ParseWarning(
            0,
            f"the SavoirFaire file {name} names {count:,} identifier(s) absent from the extract "
            f"(lines {where}{', …' if count > len(lines) else ''}): their specialties are "
            "not used",
        )
    ]


def _load_savoir_faire(source: Source, *, needed: bool) -> SpecialtyIndex | None:
    """The SavoirFaire file's specialties, when there is one (newer extracts leave the
    activity file's specialty columns empty, or drop them)."""
    with open_savoir_faire(source) as text:
        if text is None:
            if not needed:
                return None
            logger.warning(
                "%s has no specialty columns and no SavoirFaire file was found: "
                "practitioners are imported without specialty",
                source.path.name,
            )
            return None
        try:
            return SpecialtyIndex.from_lines(text)
        except ExtractFormatError as exc:
            raise DirectoryImportError(str(exc)) from None


async def load_fhir(
    source: Source,
    generation: Generation,
    grouper: Grouper,
    tally: Tally,
    progress: ImportProgress | None,
) -> None:
    from bridge.directory.fhir import iter_fhir_records

    if progress is not None:
        progress.started(None)
    writer = _Writer(generation)
    try:
        for rows, errors, warnings in batches_of_records(iter_fhir_records(source.path)):
            tally.lines += len(rows) + len(errors)
            tally.records += len(rows)
            tally.count(errors, warnings)
            await writer.write(grouper.feed(rows))
            if progress is not None:
                progress.advanced(0, tally.lines)
        await writer.write(grouper.flush())
    finally:
        await writer.drain()
