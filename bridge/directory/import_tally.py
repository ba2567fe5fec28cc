"""What a directory import counts as it reads: lines, records, the first errors and warnings,
and when to give up; the errors that end an import, and where it reports progress."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bridge.directory.model import ParseError, ParseWarning

KEPT_ISSUES = 20
SHOWN_LINES = 5
"""Line numbers given with a warning about many lines (the first ones)."""


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
class Tally:
    """The running count of one import (`count` raises `ImportAbortedError` past the limit)."""

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
