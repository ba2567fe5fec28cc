"""A large SQLite import indexes its practitioners' words in a process of its own (`scratch`).

The words go to an index in a scratch database built by another process while the importer's
connection writes the rows, then the index is copied in. The directory must be the same as when one
connection writes both, and a failure on the scratch side must leave the live directory, the
database and the temporary folder as they were.
"""

from __future__ import annotations

import multiprocessing.util
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from bridge.directory import generation_sqlite, scratch
from bridge.directory.generation_sqlite import SqliteGeneration
from bridge.directory.importer import DirectoryImportError, import_directory
from bridge.directory.spill import PREFIX
from tests.directory_support import (
    demo_extract,
    directory_database,
    leftover_tables,
    scratch_disk_full,
    search,
    table_counts,
)

_QUERIES = ("martin", "martin leger", "cardio lyon", "ma", "75", "dupont paris", "marten")
_TERMS = ("martin", "ma*", "9lmartin", "9p10", "9d75", "9cparis", "9z75*")


@pytest.fixture
def short_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temporary folder of this test's own, where the import's private folder goes."""
    # The fork server's folder is made (once per process) where temporary files go now, not
    # in this folder, which goes with the test while the fork server lives on.
    multiprocessing.util.get_temp_dir()
    folder = Path(tempfile.mkdtemp(prefix="caducee-scratch-"))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _spills(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(PREFIX)]


def _contents(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every stored row, and what the word index finds for some words, in id order."""
    with sqlite3.connect(path) as conn:
        found = {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()  # noqa: S608
            for table in (
                "directory_practitioner",
                "directory_place",
                "directory_word",
                "directory_typo",
            )
        }
        for term in _TERMS:
            found[term] = conn.execute(
                "SELECT rowid FROM directory_fts WHERE directory_fts MATCH ? ORDER BY rowid",
                (term,),
            ).fetchall()
    return found


async def test_the_index_built_beside_gives_the_same_directory(
    tmp_path: Path, short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extract = demo_extract(tmp_path, lines=4000, seed=23)
    here, beside = tmp_path / "here", tmp_path / "beside"
    here.mkdir()
    beside.mkdir()
    async with directory_database("sqlite", here) as db:
        one = await import_directory(db, extract)
        pages = [await search(db, q, limit=50) for q in _QUERIES]
    monkeypatch.setattr(generation_sqlite, "SCRATCH_MIN_ROWS", 0)
    used: list[str] = []
    write_beside = SqliteGeneration._write_beside

    async def noted(self: SqliteGeneration, path: str) -> None:
        used.append(path)
        await write_beside(self, path)

    monkeypatch.setattr(SqliteGeneration, "_write_beside", noted)
    async with directory_database("sqlite", beside) as db:
        two = await import_directory(db, extract)
        assert [await search(db, q, limit=50) for q in _QUERIES] == pages
        assert await leftover_tables(db) == []
    assert len(used) == 1  # this one was indexed beside
    assert (two.practitioners, two.records, two.new) == (one.practitioners, one.records, one.new)
    assert one.practitioners > 1000
    assert _contents(beside / "bridge.db") == _contents(here / "bridge.db")
    assert _spills(short_tmp) == []


@pytest.mark.parametrize("failing", ["index", "write_rows"])
async def test_a_failing_build_process_leaves_everything_as_it_was(
    failing: str, tmp_path: Path, short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extract = demo_extract(tmp_path, lines=2000, seed=29)
    (tmp_path / "new").mkdir()
    async with directory_database("sqlite", tmp_path) as db:
        await import_directory(db, extract)
        before = await table_counts(db)
        found = await search(db, "martin", limit=50)
        monkeypatch.setattr(generation_sqlite, "SCRATCH_MIN_ROWS", 0)
        # The processes run the real functions, except that one of them finds the disk full.
        functions = {
            name: getattr(scratch, name)
            for name in ("SCHEMA", "start", "index", "finish", "start_rows", "finish_rows")
        }
        functions["write_rows"] = scratch.write_rows
        functions[failing] = scratch_disk_full
        monkeypatch.setattr(generation_sqlite, "scratch", SimpleNamespace(**functions))
        with pytest.raises(DirectoryImportError, match="database or disk is full"):
            await import_directory(db, demo_extract(tmp_path / "new", lines=2500, seed=31))
        assert await table_counts(db) == before
        assert await search(db, "martin", limit=50) == found
        assert await leftover_tables(db) == []
        # The scratch database was detached with the failed import: the next one works.
        monkeypatch.setattr(generation_sqlite, "scratch", scratch)
        again = await import_directory(db, extract)
        assert (again.new, again.changed, again.disappeared) == (0, 0, 0)
    assert _spills(short_tmp) == []
