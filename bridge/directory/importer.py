"""`import_directory`: the register (or a FHIR export) into the directory, all or nothing.

The file is streamed in batches: parsed (pure, `rpps`/`fhir`), gathered into one row per
practitioner (`rows.Grouper`), written to a staging table while the next batch is parsed
(`loading`; the database driver works in its own thread, so parsing and writing overlap), then
built and swapped in by `generations`. Memory stays flat whatever the file's size.

Past `max_errors` malformed lines the import stops and changes nothing; so does any exception,
Ctrl-C included. Warnings (an RPPS failing its check digit) never stop an import.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sqlite3
import time
import zipfile
import zlib
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url

from bridge.db import Database
from bridge.directory.generation_postgres import PostgresGeneration
from bridge.directory.generation_sqlite import SqliteGeneration
from bridge.directory.generations import (
    DEFAULT_MAX_SHRINK,
    Generation,
    ImportBusyError,
    ImportFacts,
    ImportRefusedError,
)
from bridge.directory.import_tally import (
    DirectoryImportError,
    ImportAbortedError,
    ImportProgress,
    Tally,
)
from bridge.directory.loading import load_extract, load_fhir, merge_warnings_for
from bridge.directory.model import DEFAULT_MAX_ERRORS, ParseError, ParseWarning
from bridge.directory.rows import Grouper
from bridge.directory.sources import SourceError, locate
from bridge.directory.spill import DuplicateNameError

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


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector off while the directory is written: the build makes millions
    of short-lived rows that hold no cycles, and the collections they trigger walk everything
    the import holds (about a second of the build's 13 on the whole register)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def generation_for(db: Database) -> Generation:
    """The staging/swap implementation for the database's back end."""
    url = db.engine.url
    if url.get_backend_name() == "sqlite":
        return SqliteGeneration(make_url(url).database or "")
    return PostgresGeneration(db.engine)


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
    tally = Tally(max_errors)
    grouper = Grouper()
    generation = generation_for(db)
    try:
        await generation.begin()
    except ImportBusyError as exc:
        raise DirectoryImportError(str(exc)) from None
    try:
        if source.kind == "fhir":
            await load_fhir(source, generation, grouper, tally, progress)
        else:
            await load_extract(source, generation, grouper, tally, progress)
        if tally.records == 0:
            raise ImportRefusedError(_nothing_found(tally))
        if progress is not None:
            progress.phase("building the search index")
        with _collector_paused():
            await generation.build(grouper.vocabulary)
        if generation.merged:
            tally.note(merge_warnings_for(source, generation.merged))
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
            f"{source.path.name}: a process of the import stopped unexpectedly (out of memory?)"
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


def _nothing_found(tally: Tally) -> str:
    found = f"no practitioner in the file ({tally.lines:,} lines or entries read"
    if tally.first_errors:
        first = tally.first_errors[0]
        where = f"line {first.line}: " if first.line else ""
        found += f", {tally.errors:,} unusable, first {where}{first.message}"
    return found + ")"
