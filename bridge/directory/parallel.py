"""Parsing a large extract on several processor cores (and the processes an import starts).

Parsing and gathering 2.2 million lines is pure Python and takes most of an import's time on
one core. For large files the importer hands blocks of lines, undecoded, to worker
processes, each running the same pure code (`ExtractParser`, `Grouper`) and writing the
practitioner rows it gathers to the import's spill, in files of its own (`spill.Shard`); the
importer's process only reads the file's bytes, counts what the workers report (rows,
errors, the vocabulary learnt) and, once they are done, reads the spill back in name order.
Blocks are cut between two practitioners, so a practitioner's lines stay together.

Workers start from a clean interpreter (`forkserver`), never as a fork of the importer, which
runs database threads.

Workers never outlive the importer: killed (SIGKILL, out of memory), it cannot stop them, so
each worker watches it. On Linux the kernel kills a worker when its parent (the fork server)
dies (`PR_SET_PDEATHSIG`), and the fork server exits when the importer does; and everywhere a
watchdog thread in each worker exits the worker within a second of the importer's death.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bridge.directory.model import ParseError, ParseWarning
from bridge.directory.rows import Grouper, Vocabulary
from bridge.directory.rpps import ExtractParser, Layout
from bridge.directory.savoir_faire import SpecialtyIndex
from bridge.directory.spill import Shard, bucketed

BatchResult = tuple[
    int,
    list[ParseError],
    list[ParseWarning],
    Vocabulary,
    int,
    tuple[list[int], list[str]],
]
"""(practitioner rows written to the spill, errors, warnings, vocabulary learnt, records,
SavoirFaire identifiers newly named) for one batch of lines."""

_parser: ExtractParser | None = None
_grouper: Grouper | None = None
_specialties: SpecialtyIndex | None = None
_shard: Shard | None = None
_encoding = "utf-8"


_PR_SET_PDEATHSIG = 1
WATCH_SECONDS = 0.5


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: the watchdog is enough
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _watch(importer: int) -> None:
    while _alive(importer):
        time.sleep(WATCH_SECONDS)
    os._exit(1)  # the importer is gone: nobody will read this worker's results


def _guarded(importer: int, initializer: Callable[..., None], initargs: tuple[Any, ...]) -> None:
    """A worker's start: bound to the importer's life, then `initializer(*initargs)`."""
    _die_with_parent()
    threading.Thread(target=_watch, args=(importer,), name="importer-watch", daemon=True).start()
    initializer(*initargs)


def guarded_pool(
    workers: int, initializer: Callable[..., None], initargs: tuple[Any, ...]
) -> ProcessPoolExecutor:
    """Worker processes started clean (`forkserver`) that never outlive the importer (see the
    module docstring), each set up by `initializer(*initargs)`."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("forkserver"),
        initializer=_guarded,
        initargs=(os.getpid(), initializer, initargs),
    )


def _start(layout: Layout, specialties: SpecialtyIndex | None, spill: Path, encoding: str) -> None:
    global _parser, _grouper, _specialties, _shard, _encoding
    if specialties is not None:
        specialties.track()
    _specialties = specialties
    _parser = ExtractParser(layout, specialties)
    _grouper = Grouper()
    _shard = Shard(spill, str(os.getpid()))
    _encoding = encoding


def parse_block(block: bytes, first_line_no: int) -> BatchResult:
    """In a worker: one block of whole practitioners' lines (`read_byte_blocks`), decoded
    as the importer would have (undecodable bytes as U+FFFD), parsed, gathered and written
    to the import's spill (this process's `Shard`), on disk when this returns."""
    assert _parser is not None and _grouper is not None and _shard is not None, "not started"
    text = block.decode(_encoding, errors="replace")
    done, records, errors, warnings = _parser.gather_text(text, first_line_no, _grouper)
    rows = bucketed(done + _grouper.flush())
    _shard.add(rows)
    _shard.flush()
    learnt = _grouper.vocabulary.take()
    named = _specialties.take_seen() if _specialties is not None else ([], [])
    return rows.count, errors, warnings, learnt, records, named


def pool(
    workers: int, layout: Layout, specialties: SpecialtyIndex | None, spill: Path, encoding: str
) -> Executor:
    """The parsing processes (`parse_block`), decoding the file's bytes from `encoding` and
    writing their rows into the `spill` folder."""
    return guarded_pool(workers, _start, (layout, specialties, spill, encoding))


def cut_point(block: bytes, rpps_column: int) -> int:
    """Where to end a block of whole lines (`read_byte_blocks`) so that the last
    practitioner's lines all go to the next one.

    Returns the offset of the first line of the block's last practitioner (0 when the whole
    block is one practitioner: then the block is kept whole). Lines without an identifier
    (blank, broken: the parser reports or skips them) belong to nobody: one between two
    lines of the same practitioner does not cut them apart, or each half would be read by
    another process and the practitioner would come out as two rows merged in another
    order than the single-process parser's.
    """

    def rpps(line: bytes) -> bytes:
        cells = line.split(b"|", rpps_column + 1)
        return cells[rpps_column] if len(cells) > rpps_column else b""

    cut = 0
    last = b""
    end = len(block)
    while end > 0:
        start = block.rfind(b"\n", 0, end - 1) + 1
        found = rpps(block[start:end])
        if found.isdigit():
            if last and found != last:
                return cut
            last, cut = found, start
        end = start
    return 0
