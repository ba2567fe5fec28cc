"""`import_directory`: the register (or a FHIR export) into the directory, all or nothing.

The file is streamed in batches: parsed (pure, `rpps`/`fhir`), gathered into one row per
practitioner (`rows.Grouper`), written to a staging table while the next batch is parsed
(the database driver works in its own thread, so parsing and writing overlap), then built and
swapped in by `generations`. Memory stays flat whatever the file's size.

Past `max_errors` malformed lines the import stops and changes nothing; so does any exception,
Ctrl-C included. Warnings (an RPPS failing its check digit) never stop an import.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import sqlite3
import time
import zipfile
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url

from bridge.db import Database
from bridge.directory import parallel
from bridge.directory.duplicates import first_lines, merge_warnings
from bridge.directory.generation_postgres import PostgresGeneration
from bridge.directory.generation_sqlite import SqliteGeneration
from bridge.directory.generations import (
    DEFAULT_MAX_SHRINK,
    Generation,
    ImportBusyError,
    ImportFacts,
    ImportRefusedError,
)
from bridge.directory.model import (
    DEFAULT_MAX_ERRORS,
    ParseError,
    ParseWarning,
    PractitionerRecord,
)
from bridge.directory.rows import Grouper
from bridge.directory.rpps import (
    RECORD_FIELDS,
    ExtractFormatError,
    ExtractParser,
    Layout,
    RecordRow,
    read_header,
)
from bridge.directory.savoir_faire import SpecialtyIndex
from bridge.directory.sources import (
    Source,
    SourceError,
    locate,
    open_activity,
    open_savoir_faire,
)
from bridge.directory.spill import DuplicateNameError, Merged

logger = logging.getLogger(__name__)

BATCH_LINES = 20_000
MAX_WORKERS = 4
PARALLEL_MIN_CHARS = 50_000_000
"""Smaller files are parsed in the importer's process: starting workers would cost more."""
KEPT_ISSUES = 20
SHOWN_LINES = 5
"""Line numbers given with a warning about many lines (the first ones)."""
_FILE_ERRORS = (OSError, EOFError, UnicodeError, zipfile.BadZipFile, zlib.error)
"""A file that breaks while it is read (truncated zip, full disk): the import stops cleanly."""

__all__ = [
    "DEFAULT_MAX_ERRORS",
    "DirectoryImportError",
    "ImportAbortedError",
    "ImportBusyError",
    "ImportProgress",
    "ImportReport",
    "import_directory",
]


class DirectoryImportError(Exception):
    """The import did not happen; the directory is unchanged. The message is for the admin."""


class ImportAbortedError(DirectoryImportError):
    """Too many malformed lines: the import stopped and changed nothing."""

    def __init__(self, message: str, errors: Sequence[ParseError]) -> None:
        super().__init__(message)
        self.errors = list(errors)


class ImportProgress(Protocol):
    """Where the importer reports progress (a rich bar on a terminal, log lines otherwise)."""

    def started(self, total: int | None) -> None:
        """Reading begins; `total` is the size of the input in characters when known."""

    def advanced(self, done: int, lines: int) -> None:
        """`done` characters (cumulative) and `lines` lines read so far."""

    def phase(self, text: str) -> None:
        """A step after reading (building the index, swapping), for the user to see."""


@dataclass(slots=True)
class ImportReport:
    """What an import did (also recorded in `directory_import`/`directory_change`)."""

    import_id: int
    source: str
    format: str
    lines: int
    records: int
    practitioners: int
    new: int
    changed: int
    disappeared: int
    initial: bool
    errors: int
    warnings: int
    seconds: float
    first_errors: list[ParseError] = field(default_factory=list)
    first_warnings: list[ParseWarning] = field(default_factory=list)


@dataclass(slots=True)
class _Tally:
    max_errors: int
    lines: int = 0
    records: int = 0
    errors: int = 0
    warnings: int = 0
    first_errors: list[ParseError] = field(default_factory=list)
    first_warnings: list[ParseWarning] = field(default_factory=list)

    def note(self, warnings: Sequence[ParseWarning]) -> None:
        self.warnings += len(warnings)
        self.first_warnings.extend(warnings[: KEPT_ISSUES - len(self.first_warnings)])

    def note_first(self, warnings: Sequence[ParseWarning]) -> None:
        """Warnings about the whole file: shown before the per-line ones, whatever came first."""
        self.warnings += len(warnings)
        self.first_warnings[:0] = warnings
        del self.first_warnings[KEPT_ISSUES:]

    def count(self, errors: Sequence[ParseError], warnings: Sequence[ParseWarning]) -> None:
        self.errors += len(errors)
        self.warnings += len(warnings)
        self.first_errors.extend(errors[: KEPT_ISSUES - len(self.first_errors)])
        self.first_warnings.extend(warnings[: KEPT_ISSUES - len(self.first_warnings)])
        if self.errors > self.max_errors:
            shown = "; ".join(f"line {e.line}: {e.message}" for e in self.first_errors[:5])
            raise ImportAbortedError(
                f"more than {self.max_errors} malformed lines (first: {shown}); "
                "import stopped, the directory is unchanged",
                self.first_errors,
            )


def generation_for(db: Database) -> Generation:
    """The staging/swap implementation for the database's back end."""
    url = db.engine.url
    if url.get_backend_name() == "sqlite":
        return SqliteGeneration(make_url(url).database or "")
    return PostgresGeneration(db.engine)


Batch = tuple[list[RecordRow], list[ParseError], list[ParseWarning]]


def _batches_of_records(
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
                rows.append(tuple(getattr(item, name) for name in getters))
            elif isinstance(item, ParseError):
                errors.append(item)
            else:
                warnings.append(item)
        yield rows, errors, warnings


async def import_directory(
    db: Database,
    path: Path | str,
    *,
    max_errors: int = DEFAULT_MAX_ERRORS,
    max_shrink: float | None = DEFAULT_MAX_SHRINK,
    progress: ImportProgress | None = None,
) -> ImportReport:
    """Replace the directory with the practitioners of the file at `path`, atomically.

    Raises:
        DirectoryImportError: the file cannot be used (missing, wrong format, missing column);
            `ImportAbortedError` past `max_errors` malformed lines; `ImportBusyError`-based
            message when another import is running; the file holds no practitioner, or would
            remove more than `max_shrink` of the directory (None: any share). The directory
            is then unchanged.
    """
    started = time.perf_counter()
    started_at = datetime.now(UTC)
    try:
        source = locate(Path(path))
    except SourceError as exc:
        raise DirectoryImportError(str(exc)) from None
    tally = _Tally(max_errors)
    grouper = Grouper()
    generation = generation_for(db)
    try:
        await generation.begin()
    except ImportBusyError as exc:
        raise DirectoryImportError(str(exc)) from None
    try:
        if source.kind == "fhir":
            await _load_fhir(source, generation, grouper, tally, progress)
        else:
            await _load_extract(source, generation, grouper, tally, progress)
        if tally.records == 0:
            raise ImportRefusedError(_nothing_found(tally))
        if progress is not None:
            progress.phase("building the search index")
        await generation.build(sorted(grouper.cities))
        if generation.merged:
            tally.note(_merge_warnings(source, generation.merged))
        if progress is not None:
            progress.phase("switching to the new directory")
        facts = ImportFacts(
            source.path.name,
            source.kind,
            started_at,
            tally.lines,
            tally.records,
            tally.errors,
            tally.warnings,
            max_shrink,
        )
        result = await generation.swap(facts)
    except BrokenProcessPool:
        await asyncio.shield(generation.discard())
        raise DirectoryImportError(
            f"{source.path.name}: a parsing process stopped unexpectedly (out of memory?)"
        ) from None
    except (DuplicateNameError, ImportRefusedError, *_FILE_ERRORS) as exc:
        await asyncio.shield(generation.discard())
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DirectoryImportError(f"{source.path.name}: {reason}") from None
    except (sqlite3.DatabaseError, asyncpg.PostgresError) as exc:
        # A full disk or a database going away mid-import: the staging is dropped, the
        # live directory was never touched.
        await asyncio.shield(generation.discard())
        raise DirectoryImportError(f"{source.path.name}: the database failed: {exc}") from None
    except BaseException:
        await asyncio.shield(generation.discard())
        raise
    await generation.discard()
    return ImportReport(
        import_id=result.import_id,
        source=source.path.name,
        format=source.kind,
        lines=tally.lines,
        records=tally.records,
        practitioners=result.practitioners,
        new=result.new,
        changed=result.changed,
        disappeared=result.disappeared,
        initial=result.initial,
        errors=tally.errors,
        warnings=tally.warnings,
        seconds=time.perf_counter() - started,
        first_errors=tally.first_errors,
        first_warnings=tally.first_warnings,
    )


class _Writer:
    """Keeps one staging write in flight while the next batch is parsed."""

    def __init__(self, generation: Generation) -> None:
        self._generation = generation
        self._pending: asyncio.Task[None] | None = None

    async def write(self, rows: Sequence[object]) -> None:
        await self.drain()
        if rows:
            self._pending = asyncio.ensure_future(self._generation.add(rows))  # type: ignore[arg-type]

    async def drain(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending


async def _load_extract(
    source: Source,
    generation: Generation,
    grouper: Grouper,
    tally: _Tally,
    progress: ImportProgress | None,
) -> None:
    specialties = None
    with open_activity(source) as text:
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
            await _load_in_workers(
                text, header, layout, specialties, workers, generation, grouper, tally, progress
            )
        else:
            await _load_here(
                text, header, layout, specialties, generation, grouper, tally, progress
            )
    if specialties is not None:
        tally.note_first(_unnamed_warnings(source, specialties))


async def _load_here(
    text: Iterator[str],
    header: str,
    layout: Layout,
    specialties: SpecialtyIndex | None,
    generation: Generation,
    grouper: Grouper,
    tally: _Tally,
    progress: ImportProgress | None,
) -> None:
    """Parse and gather in the importer's process (smaller files)."""
    parser = ExtractParser(layout, specialties)
    writer = _Writer(generation)
    done = len(header)
    line_no = 2
    try:
        while batch := list(itertools.islice(text, BATCH_LINES)):
            rows, errors, warnings = parser.parse(batch, line_no)
            line_no += len(batch)
            tally.lines += len(batch)
            tally.records += len(rows)
            tally.count(errors, warnings)
            await writer.write(grouper.feed(rows))
            if progress is not None:
                done += sum(map(len, batch))
                progress.advanced(done, tally.lines)
        await writer.write(grouper.flush())
    finally:
        await writer.drain()


async def _load_in_workers(
    text: Iterator[str],
    header: str,
    layout: Layout,
    specialties: SpecialtyIndex | None,
    workers: int,
    generation: Generation,
    grouper: Grouper,
    tally: _Tally,
    progress: ImportProgress | None,
) -> None:
    """The same as the single-process loop, with parsing in worker processes (`parallel`)."""
    loop = asyncio.get_running_loop()
    rpps_column = layout.positions["rpps"]
    in_flight: deque[asyncio.Future[parallel.BatchResult]] = deque()
    done = len(header)
    line_no = 2
    carried: list[str] = []

    async def collect() -> None:
        rows, errors, warnings, cities, records, named = await in_flight.popleft()
        tally.records += records
        tally.count(errors, warnings)
        grouper.cities.update(cities)
        if specialties is not None:
            specialties.add_seen(*named)
        await generation.add(rows)

    with parallel.pool(workers, layout, specialties) as executor:
        try:
            while True:
                fresh = list(itertools.islice(text, BATCH_LINES))
                batch = carried + fresh
                if not batch:
                    break
                cut = parallel.cut_point(batch, rpps_column) if fresh else len(batch)
                batch, carried = (batch[:cut], batch[cut:]) if cut else (batch, [])
                in_flight.append(
                    loop.run_in_executor(executor, parallel.parse_batch, batch, line_no)
                )
                line_no += len(batch)
                tally.lines += len(batch)
                if len(in_flight) > workers:
                    await collect()
                if progress is not None:
                    done += sum(map(len, fresh))
                    progress.advanced(done, tally.lines)
            while in_flight:
                await collect()
        finally:
            for future in in_flight:
                future.cancel()


def _nothing_found(tally: _Tally) -> str:
    found = f"no practitioner in the file ({tally.lines:,} lines or entries read"
    if tally.first_errors:
        first = tally.first_errors[0]
        where = f"line {first.line}: " if first.line else ""
        found += f", {tally.errors:,} unusable, first {where}{first.message}"
    return found + ")"


def _merge_warnings(source: Source, merged: Sequence[Merged]) -> list[ParseWarning]:
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


async def _load_fhir(
    source: Source,
    generation: Generation,
    grouper: Grouper,
    tally: _Tally,
    progress: ImportProgress | None,
) -> None:
    from bridge.directory.fhir import iter_fhir_records

    if progress is not None:
        progress.started(None)
    writer = _Writer(generation)
    try:
        for rows, errors, warnings in _batches_of_records(iter_fhir_records(source.path)):
            tally.lines += len(rows) + len(errors)
            tally.records += len(rows)
            tally.count(errors, warnings)
            await writer.write(grouper.feed(rows))
            if progress is not None:
                progress.advanced(0, tally.lines)
        await writer.write(grouper.flush())
    finally:
        await writer.drain()
