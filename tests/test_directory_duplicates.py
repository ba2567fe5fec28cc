"""One identifier on lines far apart, under different names: merged, reported, same either way.

The rule (bridge.directory.duplicates): one identifier is one practitioner; the most complete
identity is kept, every activity and spelling kept with it, and a warning names both spellings
with their line numbers. The serial and the parallel parsers give the same directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.directory import loading, store
from bridge.directory.importer import import_directory
from bridge.directory.rows import ROW_SEP
from bridge.directory.spill import Spill, identity_rank
from tests.directory_support import (
    BACKENDS,
    EXAMPLE_LINE,
    demo_extract,
    directory_database,
    search,
)

pytestmark = pytest.mark.parametrize("backend", BACKENDS)

# The register's example practitioner again, 1 500 lines later, spelled without accent and
# hyphen, practising in Paris: the same identifier under another name.
OTHER_SPELLING = (
    EXAMPLE_LINE.replace("MARTIN-LÉGER", "MARTIN LEGER")
    .replace("ANNE-SOPHIE", "ANNE")
    .replace("69002 LYON|69002|69382|Lyon 2e Arrondissement", "75015 PARIS|75015|75115|Paris")
    .replace("|69|Rhône|", "|75|Paris|")
)
# A third spelling, then the first one again further down (a file that is not sorted).
THIRD_SPELLING = EXAMPLE_LINE.replace("MARTIN-LÉGER", "MARTIN").replace("|SM04|", "|SM54|")


def _extract(folder: Path) -> tuple[Path, list[int]]:
    path = demo_extract(folder, lines=2500, seed=5)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    first = next(i for i, x in enumerate(lines, 1) if "|10009999995|" in x)
    lines.insert(1500, OTHER_SPELLING + "\n")
    lines.insert(2000, THIRD_SPELLING + "\n")
    lines.append(EXAMPLE_LINE + "\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path, [first, 1501, 2001]


async def test_one_identifier_under_several_names_is_one_practitioner(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extract, at = _extract(tmp_path)
    monkeypatch.setattr(loading, "BLOCK_CHARS", 90_000)
    async with directory_database(backend, tmp_path) as db:
        serial = await import_directory(db, extract)
        notes = [w for w in serial.first_warnings if "several names" in w.message]
        assert len(notes) == 1, serial.first_warnings
        note = notes[0]
        assert note.line == at[1]
        assert "kept “MARTIN-LÉGER ANNE-SOPHIE” (line 2)" in note.message
        assert f"“MARTIN LEGER ANNE” (line {at[1]})" in note.message
        assert f"“MARTIN ANNE-SOPHIE” (line {at[2]})" in note.message
        async with db.sessions() as session:
            records = await store.get_practitioner(session, "10009999995")
        assert {r.last_name for r in records} == {"MARTIN-LÉGER"}
        assert {r.city for r in records} >= {"Lyon 2e Arrondissement", "Paris"}
        queries = ("martin leger", "martin-leger paris", "martin anne", "cardio lyon", "martin")
        expected = [await search(db, q, limit=40) for q in queries]
        for page in expected[:3]:
            assert [r.rpps for r in page.results].count("10009999995") == 1

        monkeypatch.setattr(loading, "PARALLEL_MIN_CHARS", 0)
        monkeypatch.setattr(loading, "MAX_WORKERS", 2)
        monkeypatch.setattr(loading.os, "cpu_count", lambda: 2)
        parallel = await import_directory(db, extract)
        assert (parallel.new, parallel.changed, parallel.disappeared) == (0, 0, 0)
        assert parallel.practitioners == serial.practitioners
        assert [w for w in parallel.first_warnings if "several names" in w.message] == notes
        assert [await search(db, q, limit=40) for q in queries] == expected


def test_the_kept_identity_does_not_depend_on_the_order(backend: str, tmp_path: Path) -> None:
    del backend  # pure: once is enough, but the module is parametrised

    def row(last: str, first: str, activity: str) -> str:
        key = f"{last.lower()}\t{first.lower()}\t1"
        words = f"{last.lower()} {first.lower()}"
        return ROW_SEP.join([key, "1", "8", last, first, "Dr", "10", "Médecin", activity, words])

    rows = [
        row("MARTIN", "ANNE", "a"),
        row("MARTIN-LÉGER", "ANNE", "b"),
        row("MARTIN", "ANNE", "c"),
    ]
    assert identity_rank(rows[1]) > identity_rank(rows[0])
    kept = []
    for order in (rows, rows[::-1]):
        spill = Spill(str(tmp_path))
        spill.add(order)
        out = [r for batch in spill.sorted_batches() for r in batch]
        spill.close()
        assert len(out) == 1
        kept.append((out[0].split(ROW_SEP)[3], spill.merged))
    assert kept[0] == kept[1]
    # MARTIN ANNE twice (two rows of the same name merge first: two activity lines) wins.
    assert kept[0][0] == "MARTIN"
