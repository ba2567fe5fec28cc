"""Bulk onboarding files: one practitioner per line, checked whole before anything changes.

The file is CSV (comma or semicolon, as spreadsheets export it), UTF-8, with an optional header
line naming the columns `rpps` and `homeserver`; without a header the first column is the RPPS
number and the optional second the homeserver. Blank lines are skipped. Every problem is
reported with its line number (the first line is line 1), so the admin can fix the file and
run it again; a file with any problem onboards nobody. Pure code: the directory and the
homeservers are checked by the handler, which adds its own numbered errors.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from bridge.config import is_valid_server_name
from bridge.directory.model import RppsId

MAX_LINES = 5000
_RPPS = re.compile(r"^(?:\d{11}|[0-9A-Z]{9})$")
_HEADER_NAMES = {"rpps": "rpps", "identifiant pp": "rpps", "homeserver": "homeserver"}


@dataclass(frozen=True, slots=True)
class BulkLine:
    line: int
    rpps: RppsId
    homeserver: str | None


@dataclass(frozen=True, slots=True)
class LineError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def _delimiter(first_line: str) -> str:
    return ";" if first_line.count(";") > first_line.count(",") else ","


def parse_bulk(text: str) -> tuple[list[BulkLine], list[LineError]]:
    """The lines of a bulk onboarding file and the problems found in it."""
    text = text.removeprefix("\ufeff")  # spreadsheets write a byte-order mark
    lines = text.splitlines()
    if len(lines) > MAX_LINES:
        return [], [LineError(MAX_LINES + 1, f"too many lines (at most {MAX_LINES} per file)")]
    first = next((ln for ln in lines if ln.strip()), "")
    reader = csv.reader(io.StringIO("\n".join(lines)), delimiter=_delimiter(first))
    columns = {"rpps": 0, "homeserver": 1}
    items: list[BulkLine] = []
    errors: list[LineError] = []
    seen: dict[str, int] = {}
    header_done = False
    for number, cells in enumerate(reader, start=1):
        cells = [c.strip() for c in cells]
        if not any(cells):
            continue
        if not header_done:
            header_done = True
            names = [c.lower() for c in cells]
            if names[0] and not names[0][0].isdigit():
                unknown = [c for c in names if c and c not in _HEADER_NAMES]
                if unknown or "rpps" not in {_HEADER_NAMES.get(c) for c in names}:
                    errors.append(
                        LineError(
                            number,
                            "the header must name the columns 'rpps' and optionally "
                            f"'homeserver' (found {', '.join(cells)})",
                        )
                    )
                    return [], errors
                columns = {_HEADER_NAMES[c]: i for i, c in enumerate(names) if c}
                continue
        rpps = cells[columns["rpps"]] if columns["rpps"] < len(cells) else ""
        position = columns.get("homeserver")
        homeserver = cells[position] if position is not None and position < len(cells) else ""
        extra = [c for i, c in enumerate(cells) if c and i not in columns.values()]
        if extra:
            errors.append(LineError(number, f"unexpected extra value {extra[0]!r}"))
            continue
        if not rpps:
            errors.append(LineError(number, "no RPPS number"))
            continue
        if not _RPPS.match(rpps):
            errors.append(
                LineError(number, f"{rpps!r} is not an RPPS (11 digits) or ADELI (9) number")
            )
            continue
        if homeserver and not is_valid_server_name(homeserver):
            errors.append(LineError(number, f"{homeserver!r} is not a homeserver name"))
            continue
        if rpps in seen:
            errors.append(LineError(number, f"{rpps} is already on line {seen[rpps]}"))
            continue
        seen[rpps] = number
        items.append(BulkLine(number, RppsId(rpps), homeserver or None))
    if not items and not errors:
        errors.append(LineError(1, "the file lists no practitioner"))
    return items, errors
