"""Reporting identifiers found under several names (the merge itself is in `spill`).

The rule: all lines of one identifier make one practitioner. When their names disagree, the
most complete identity is kept (`spill.identity_rank`) and every activity and every spelling's
search words are kept with it, so a search for either spelling finds the practitioner. Each such
identifier is reported as a warning (the import goes on) naming the kept and the merged names
with the line where each first appears, so an admin can check the file.

Line numbers are found again by reading the identifier column of the file once more, only when
there is something to report: a clean extract costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bridge.directory.model import ParseWarning
from bridge.directory.rpps import Layout
from bridge.directory.spill import Merged


def first_lines(
    lines: Iterable[str], layout: Layout, wanted: set[str]
) -> dict[tuple[str, str, str], int]:
    """(rpps, last name, first name) → first line number, for the identifiers in `wanted`.

    `lines` are the file's lines after the header (line 2 onwards).
    """
    rpps_at = layout.positions["rpps"]
    last_at = layout.positions["last_name"]
    first_at = layout.positions["first_name"]
    reach = max(rpps_at, last_at, first_at) + 1
    found: dict[tuple[str, str, str], int] = {}
    for number, line in enumerate(lines, 2):
        cells = line.split("|", reach)
        if len(cells) > reach - 1 and cells[rpps_at] in wanted:
            found.setdefault((cells[rpps_at], cells[last_at], cells[first_at]), number)
    return found


def merge_warnings(
    merged: Sequence[Merged], lines: dict[tuple[str, str, str], int] | None = None
) -> list[ParseWarning]:
    """One warning per identifier found under several names, at the first line of a merged
    name (0 when line numbers are unknown, e.g. for FHIR input)."""
    warnings: list[ParseWarning] = []
    known = lines or {}

    def named(name: tuple[str, str], rpps: str) -> tuple[str, int]:
        line = known.get((rpps, *name), 0)
        where = f" (line {line})" if line else ""
        return f"“{name[0]} {name[1]}”{where}", line

    for item in merged:
        kept, _ = named(item.kept, item.rpps)
        others = [named(name, item.rpps) for name in item.others]
        at = min((line for _, line in others if line), default=0)
        warnings.append(
            ParseWarning(
                at,
                f"RPPS {item.rpps} appears under several names: kept {kept}, merged "
                + ", ".join(text for text, _ in others)
                + " (one practitioner, all activities kept)",
            )
        )
    return sorted(warnings, key=lambda w: w.line)
