"""Importing the register into the directory, on SQLite and PostgreSQL: all or nothing."""

from __future__ import annotations

import asyncio
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from bridge.db import Database
from bridge.directory import importer, loading, store
from bridge.directory.generations import Generation
from bridge.directory.importer import (
    DirectoryImportError,
    ImportAbortedError,
    import_directory,
)
from bridge.directory.rows import Vocabulary
from tests.bench.rpps_synth import ACTIVITY_NAME, SAVOIR_FAIRE_NAME, generate
from tests.directory_support import (
    BACKENDS,
    demo_extract,
    directory_database,
    leftover_tables,
    search,
    table_counts,
    write_lines,
)

pytestmark = pytest.mark.parametrize("backend", BACKENDS)
FHIR_DATA = Path(__file__).parent / "data" / "fhir"


class Interrupt(Exception):
    """Stands for Ctrl-C or a crash in the middle of an import."""


class Probe:
    """Progress sink that can break an import, or search while one runs."""

    def __init__(self, fail_at: str | None = None) -> None:
        self.fail_at = fail_at
        self.phases: list[str] = []
        self.building = asyncio.Event()

    def started(self, total: int | None) -> None:
        pass

    def advanced(self, done: int, lines: int) -> None:
        if self.fail_at == "reading" and lines > 300:
            raise Interrupt

    def phase(self, text: str) -> None:
        self.phases.append(text)
        self.building.set()
        if self.fail_at == text.split()[0]:
            raise Interrupt


async def test_import_then_search_the_demo_practitioners(backend: str, tmp_path: Path) -> None:
    async with directory_database(backend, tmp_path) as db:
        report = await import_directory(db, demo_extract(tmp_path, lines=400))
        assert (report.lines, report.errors, report.initial) == (400, 0, True)
        assert report.practitioners == report.new > 250
        page = await search(db, "10009999995")
        assert page.total == 1
        assert page.results[0].display_name == "Dr Anne-Sophie MARTIN-LÉGER"
        async with db.sessions() as session:
            [record] = await store.get_practitioner(session, "10009999995")
            assert (record.city, record.specialty_code) == ("Lyon 2e Arrondissement", "SM04")
            last = await store.last_import(session)
        assert last is not None and last.practitioners == report.practitioners


async def test_too_many_malformed_lines_abort_and_change_nothing(
    backend: str, tmp_path: Path
) -> None:
    async with directory_database(backend, tmp_path) as db:
        await import_directory(db, demo_extract(tmp_path, lines=200))
        before = await table_counts(db)
        bad = tmp_path / "bad" / "PS_LibreAcces_Personne_activite_2.txt"
        bad.parent.mkdir()
        lines = demo_extract(bad.parent, lines=100).read_text().splitlines()[1:]
        write_lines(bad, ["8|1|2|broken", *lines[:50], "also|broken", *lines[50:]])
        with pytest.raises(ImportAbortedError) as caught:
            await import_directory(db, bad, max_errors=1)
        assert [e.line for e in caught.value.errors] == [2, 53]
        assert "more than 1 malformed lines" in str(caught.value)
        assert await table_counts(db) == before
        assert (await search(db, "martin leger")).total == 1
        assert await leftover_tables(db) == []
        # within the threshold (a smaller file: the admin confirms the shrink)
        report = await import_directory(db, bad, max_errors=2, max_shrink=None)
        assert (report.errors, report.lines) == (2, 102)


@pytest.mark.parametrize("fail_at", ["reading", "building", "switching"])
async def test_interrupted_import_leaves_the_previous_directory(
    backend: str, tmp_path: Path, fail_at: str
) -> None:
    async with directory_database(backend, tmp_path) as db:
        await import_directory(db, demo_extract(tmp_path, lines=200, seed=1))
        before = await table_counts(db)
        expected = await search(db, "cardio lyon")
        other = tmp_path / "other"
        other.mkdir()
        with pytest.raises(Interrupt):
            await import_directory(
                db, demo_extract(other, lines=500, seed=2), progress=Probe(fail_at)
            )
        assert await table_counts(db) == before
        assert await search(db, "cardio lyon") == expected
        assert await leftover_tables(db) == []


async def test_searches_keep_answering_during_an_import(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The build waits until the search has answered: the search runs while the new
    # generation is being built, however fast the machine builds it.
    building, searched = asyncio.Event(), asyncio.Event()
    make_generation = importer.generation_for

    def held_generation(db: Database) -> Generation:
        generation = make_generation(db)
        build = generation.build

        async def held_build(vocabulary: Vocabulary) -> None:
            building.set()
            await searched.wait()
            await build(vocabulary)

        generation.build = held_build  # type: ignore[method-assign]
        return generation

    async with directory_database(backend, tmp_path) as db:
        await import_directory(db, demo_extract(tmp_path, lines=200, seed=1))
        old = await search(db, "medecin")
        other = tmp_path / "other"
        other.mkdir()
        monkeypatch.setattr(importer, "generation_for", held_generation)

        async def search_while_building() -> None:
            await building.wait()
            assert await search(db, "medecin") == old
            searched.set()

        importing = asyncio.ensure_future(
            import_directory(db, demo_extract(other, lines=3000, seed=3), max_shrink=None)
        )
        await asyncio.wait_for(search_while_building(), timeout=60)
        report = await importing
        assert (await search(db, "medecin")).total != old.total
        assert report.new > 0 and report.disappeared > 0


async def test_reimport_reports_new_changed_and_disappeared(backend: str, tmp_path: Path) -> None:
    async with directory_database(backend, tmp_path) as db:
        first = demo_extract(tmp_path, lines=120)
        await import_directory(db, first)
        lines = first.read_text().splitlines(keepends=True)
        header, body = lines[0], lines[1:]
        gone = [x for x in body if x.split("|")[1] == "10008888884"]  # DUPONT Jean
        kept = [x for x in body if x not in gone]
        moved = next(i for i, x in enumerate(kept) if x.split("|")[1] == "10007777773")
        kept[moved] = kept[moved].replace("|75015|", "|75016|")  # FONTAINE Claire moves
        newcomer = kept[moved].replace("10007777773", "10000000017").replace("FONTAINE", "NOUVEAU")
        second = tmp_path / "next" / first.name
        second.parent.mkdir()
        second.write_text(header + "".join(kept) + newcomer)
        report = await import_directory(db, second)
        assert (report.new, report.changed, report.disappeared) == (1, 1, 1)
        async with db.sessions() as session:
            last = await store.last_import(session)
            assert last is not None
            gone_list = await store.changes(session, last.import_id, "disappeared")
            changed = await store.changes(session, last.import_id, "changed")
        assert [(c.rpps, c.last_name) for c in gone_list] == [("10008888884", "DUPONT")]
        assert [c.rpps for c in changed] == ["10007777773"]
        # Gone: only DUPOND Jeanne, one letter off, still answers "dupont jean 13".
        found = (await search(db, "dupont jean 13")).results
        assert "10008888884" not in [r.rpps for r in found]


async def test_zip_with_savoir_faire_file_inside(backend: str, tmp_path: Path) -> None:
    archive = tmp_path / "extract.zip"
    generate(archive, lines=300, seed=5, zip_output=True, separate_savoir_faire=True)
    with zipfile.ZipFile(archive) as z:
        assert any("SavoirFaire" in n for n in z.namelist())
    async with directory_database(backend, tmp_path) as db:
        report = await import_directory(db, archive)
        assert report.lines == 300 and report.errors == 0
        page = await search(db, "medecine generale")
        assert page.total > 0
        assert all(r.specialty == "Médecine générale" for r in page.results)


async def test_savoir_faire_file_beside_the_txt(backend: str, tmp_path: Path) -> None:
    result = generate(tmp_path, lines=300, seed=5, separate_savoir_faire=True)
    async with directory_database(backend, tmp_path) as db:
        await import_directory(db, result.paths[0])
        assert (await search(db, "medecine generale")).total > 0


async def test_fhir_files_go_through_the_same_importer(backend: str, tmp_path: Path) -> None:
    async with directory_database(backend, tmp_path) as db:
        report = await import_directory(db, FHIR_DATA / "bundle.json")
        assert report.format == "fhir" and report.practitioners > 0
        ndjson = await import_directory(
            db, FHIR_DATA / "practitioners.ndjson", max_errors=100, max_shrink=None
        )
        assert ndjson.practitioners > 0
        sample = json.loads((FHIR_DATA / "bundle.json").read_text())
        assert sample["resourceType"] == "Bundle"


async def test_bad_paths_are_clear_errors(backend: str, tmp_path: Path) -> None:
    async with directory_database(backend, tmp_path) as db:
        with pytest.raises(DirectoryImportError, match="no such file"):
            await import_directory(db, tmp_path / "missing.txt")
        (tmp_path / "notes.pdf").write_text("x")
        with pytest.raises(DirectoryImportError, match=r"expected the register extract"):
            await import_directory(db, tmp_path / "notes.pdf")
        header_only = write_lines(tmp_path / "cols.txt", [], header=["Identifiant PP", "Nom"])
        with pytest.raises(DirectoryImportError, match="Nom d'exercice"):
            await import_directory(db, header_only)
        (tmp_path / "empty.zip").write_bytes(b"")
        shutil.copy(tmp_path / "notes.pdf", tmp_path / "fake.zip")
        with pytest.raises(DirectoryImportError, match="not a valid zip"):
            await import_directory(db, tmp_path / "fake.zip")
        damaged = tmp_path / "damaged.zip"
        generate(damaged, lines=2000, seed=5, zip_output=True)
        data = bytearray(damaged.read_bytes())
        data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # corrupt the compressed text
        damaged.write_bytes(bytes(data))
        with pytest.raises(DirectoryImportError, match=r"damaged\.zip: "):
            await import_directory(db, damaged)
        assert await leftover_tables(db) == []


async def test_links_survive_reimports_and_respect_visibility(backend: str, tmp_path: Path) -> None:
    async with directory_database(backend, tmp_path) as db:
        extract = demo_extract(tmp_path, lines=100)
        await import_directory(db, extract)
        async with db.sessions.begin() as session:
            await store.link_matrix_id(session, "10009999995", "@asml:a.test", visible=True)
            await store.link_matrix_id(session, "10008888884", "@jd:a.test", visible=False)
        await import_directory(db, extract)
        assert (await search(db, "10009999995")).results[0].matrix_id == "@asml:a.test"
        assert (await search(db, "10008888884")).results[0].matrix_id is None
        async with db.sessions.begin() as session:
            assert await store.set_visibility(session, "10008888884", visible=True)
            assert await store.unlink_matrix_id(session, "10009999995")
        assert (await search(db, "10008888884")).results[0].matrix_id == "@jd:a.test"
        assert (await search(db, "10009999995")).results[0].matrix_id is None


def _as_published(extract: Path, form: str) -> Path:
    """The same extract saved another way a register file comes: re-saved on Windows, with
    a BOM and old line ends, or zipped."""
    text = extract.read_text(encoding="utf-8")
    if form == "windows-1252, CRLF":
        extract.write_bytes(text.replace("\n", "\r\n").encode("cp1252", errors="replace"))
    elif form == "BOM, CR":
        extract.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r").encode())
    elif form == "zip":
        archive = extract.with_suffix(".zip")
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
            zipped.writestr(ACTIVITY_NAME, text)
        extract.unlink()
        return archive
    return extract


@pytest.mark.parametrize("form", ["UTF-8", "windows-1252, CRLF", "BOM, CR", "zip"])
async def test_parsing_in_worker_processes_gives_the_same_directory(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    # The workers are handed the file's bytes and decode them themselves: whatever the
    # encoding, line ends or container, they must read what the importer's process reads.
    extract = demo_extract(tmp_path, lines=3000, seed=21)
    lines = extract.read_text().splitlines(keepends=True)
    extract.write_text("".join([*lines[:1000], "broken|line|\n", *lines[1000:]]))
    extract = _as_published(extract, form)
    monkeypatch.setattr(loading, "BLOCK_CHARS", 50_000)  # many blocks, cut between people
    async with directory_database(backend, tmp_path) as db:
        single = await import_directory(db, extract)
        expected = [await search(db, q, limit=50) for q in ("martin", "cardio", "75", "ma")]
        monkeypatch.setattr(loading, "PARALLEL_MIN_CHARS", 0)
        monkeypatch.setattr(loading, "MAX_WORKERS", 2)
        monkeypatch.setattr(loading.os, "cpu_count", lambda: 2)
        parallel = await import_directory(db, extract)
        assert (parallel.changed, parallel.new, parallel.disappeared) == (0, 0, 0)
        assert (parallel.lines, parallel.records, parallel.practitioners) == (
            single.lines,
            single.records,
            single.practitioners,
        )
        assert parallel.first_errors == single.first_errors
        assert [e.line for e in single.first_errors] == [1001]
        got = [await search(db, q, limit=50) for q in ("martin", "cardio", "75", "ma")]
        assert got == expected


async def test_savoir_faire_naming_unknown_identifiers_is_reported_the_same_both_ways(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another day's SavoirFaire file beside the extract: the practitioners it names that the
    # extract lacks are counted and their first lines given; the import goes on, on either
    # back end.
    generated = generate(tmp_path, lines=600, seed=5, separate_savoir_faire=True)
    savoir_faire = tmp_path / SAVOIR_FAIRE_NAME
    known = savoir_faire.read_text(encoding="utf-8")
    cells = known.splitlines()[1].split("|")
    strangers = []
    for n in range(7):
        # The same layout as the file's own lines, under identifiers nobody has.
        stranger = list(cells)
        stranger[1], stranger[2] = f"1999999{n:04d}", f"81999999{n:04d}"
        strangers.append("|".join(stranger) + "\n")
    savoir_faire.write_text(known + "".join(strangers), encoding="utf-8")
    first = len(known.splitlines()) + 1
    monkeypatch.setattr(loading, "BLOCK_CHARS", 30_000)
    reports = []
    async with directory_database(backend, tmp_path) as db:
        reports.append(await import_directory(db, generated.paths[0]))
        monkeypatch.setattr(loading, "PARALLEL_MIN_CHARS", 0)
        monkeypatch.setattr(loading, "MAX_WORKERS", 2)
        monkeypatch.setattr(loading.os, "cpu_count", lambda: 2)
        reports.append(await import_directory(db, generated.paths[0], max_shrink=None))
        assert (await search(db, "medecine generale")).total > 0
    lines = ", ".join(str(first + n) for n in range(5))
    for report in reports:
        # A warning about the whole file comes before any line's.
        said = [w.message for w in report.first_warnings[:1]]
        assert said == [
            f"the SavoirFaire file {savoir_faire.name} names 7 identifier(s) absent from the "
            f"extract (lines {lines}, …): their specialties are not used"
        ]
        assert report.practitioners > 0 and report.errors == 0


async def test_control_characters_in_any_source_never_break_a_practitioner(
    backend: str, tmp_path: Path
) -> None:
    # An attacker's (or a broken exporter's) register: the separators the directory stores
    # rows and activities with, a line break inside a FHIR name, a NUL. Each practitioner is
    # stored whole, the characters as spaces, and their page still opens.
    extract = demo_extract(tmp_path, lines=100)
    lines = extract.read_text(encoding="utf-8").split("\n")
    at = next(i for i, x in enumerate(lines) if x.split("|")[1:2] == ["10009999995"])
    lines[at] = lines[at].replace("CABINET DR MARTIN", "CABINET\x1e DR\x1f\x1d MARTIN\x00")
    extract.write_text("\n".join(lines), encoding="utf-8")
    bundle = tmp_path / "fhir" / "register.json"
    bundle.parent.mkdir()
    bundle.write_text(
        json.dumps(
            {
                "resourceType": "Practitioner",
                "identifier": [{"system": "https://rpps.esante.gouv.fr", "value": "10002222221"}],
                "name": [{"family": "LE\nFÈVRE\x1e", "given": ["THO\x1dMAS"]}],
            }
        ),
        encoding="utf-8",
    )
    async with directory_database(backend, tmp_path) as db:
        report = await import_directory(db, extract)
        assert report.errors == 0
        async with db.sessions() as session:
            records = await store.get_practitioner(session, "10009999995")
        assert {r.organisation for r in records} >= {"CABINET  DR   MARTIN -LÉGER"}
        assert (await search(db, "martin leger")).total >= 1
        await import_directory(db, bundle, max_shrink=None)
        async with db.sessions() as session:
            [record] = await store.get_practitioner(session, "10002222221")
        assert (record.last_name, record.first_name) == ("LE FÈVRE", "THO MAS")
        assert (await search(db, "le fevre tho mas")).total == 1
