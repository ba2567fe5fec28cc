"""`caducee directory import` over every way a real file can be wrong, as an admin runs it.

One test goes through the whole list with the CLI: each file gets a clear message and the
expected exit status, never a traceback, and the directory stays as it was (the same
practitioners, and for refused files no import recorded). Files that are only awkward (a BOM,
Windows-1252, mixed line endings) import the same practitioners as the clean file.
"""

from __future__ import annotations

import errno
import io
import json
import sqlite3
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bridge.directory import generation_sqlite, spill
from bridge.directory.cli import directory_app
from tests.bench.rpps_synth import SAVOIR_FAIRE_HEADER, header_line
from tests.directory_support import demo_extract, initialised_sqlite

runner = CliRunner()
UNCHANGED = "New: 0  changed: 0  disappeared from the register: 0"


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path, str], Path]  # (folder, the clean extract's text) → file to import
    status: int
    says: str


def _file(name: str, data: bytes | str) -> Callable[[Path, str], Path]:
    def make(folder: Path, clean: str) -> Path:
        del clean
        path = folder / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        return path

    return make


def _from_clean(name: str, change: Callable[[str], bytes]) -> Callable[[Path, str], Path]:
    def make(folder: Path, clean: str) -> Path:
        path = folder / name
        path.write_bytes(change(clean))
        return path

    return make


def _damaged_byte(clean: str) -> bytes:
    """One byte of a UTF-8 file damaged near its start, in a line of a practitioner who has
    another: that line is lost (and reported), nobody is."""
    lines = clean.split("\n")
    ids = [line.split("|")[1] if "|" in line else "" for line in lines]
    at = next(n for n in range(1, len(lines) - 1) if ids[n] == ids[n + 1])
    damaged = lines[at].encode()[:-1] + b"\xff|"  # in its last column, which nobody reads
    return b"\n".join(
        [
            *(line.encode() for line in lines[:at]),
            damaged,
            *(line.encode() for line in lines[at + 1 :]),
        ]
    )


def _zip(name: str, members: dict[str, str], cut: bool = False) -> Callable[[Path, str], Path]:
    def make(folder: Path, clean: str) -> Path:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for member, text in members.items():
                archive.writestr(member, text or clean)
        data = buffer.getvalue()
        path = folder / name
        path.write_bytes(data[: len(data) * 2 // 3] if cut else data)
        return path

    return make


def _mixed_endings(clean: str) -> bytes:
    lines = clean.splitlines()
    return "".join(x + ("\r\n" if i % 2 else "\n") for i, x in enumerate(lines)).encode()


def _savoir_faire_unknown(folder: Path, clean: str) -> Path:
    sub = folder / "sf"
    sub.mkdir()
    (sub / "PS_LibreAcces_SavoirFaire_202601051200.txt").write_text(
        header_line(SAVOIR_FAIRE_HEADER)
        + "".join(
            f"8|19999999{i:03d}|819999999{i:03d}|NOM|PRÉNOM|10|Médecin|C|Civil|S|Spécialité|"
            "SM04|Cardiologie et maladies vasculaires|\n"
            for i in range(5)
        )
    )
    path = sub / "PS_LibreAcces_Personne_activite_202601051200.txt"
    path.write_text(clean)
    return path


def _cut_download(clean: str) -> bytes:
    return clean.encode()[: len(clean) // 4]


def _with_long_line(clean: str) -> bytes:
    head, _, rest = clean.partition("\n")
    return f"{head}\n8|1{'0' * 10_000_000}|\n{rest}".encode()


def _bad_bundle(folder: Path, clean: str) -> Path:
    del clean
    entries = [
        {"resource": {"resourceType": "Practitioner", "active": "maybe"}},
        {"resource": {"resourceType": "PractitionerRole", "practitioner": 12}},
        {"resource": {"resourceType": "Nonsense"}},
    ]
    path = folder / "invalid_bundle.json"
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": entries}))
    return path


CASES = [
    Case("empty file", _file("PS_LibreAcces_Personne_activite_e.txt", b""), 1, "empty"),
    Case(
        "header only",
        _from_clean("PS_LibreAcces_Personne_activite_h.txt", lambda c: c.split("\n")[0].encode()),
        1,
        "no practitioner",
    ),
    Case(
        "BOM",
        _from_clean(
            "PS_LibreAcces_Personne_activite_b.txt", lambda c: b"\xef\xbb\xbf" + c.encode()
        ),
        0,
        UNCHANGED,
    ),
    Case(
        "Windows-1252",
        _from_clean("PS_LibreAcces_Personne_activite_w.txt", lambda c: c.encode("cp1252")),
        0,
        "read as cp1252",
    ),
    Case(
        "mixed line endings",
        _from_clean("PS_LibreAcces_Personne_activite_m.txt", _mixed_endings),
        0,
        UNCHANGED,
    ),
    Case(
        "truncated zip",
        _zip("cut.zip", {"PS_LibreAcces_Personne_activite_1.txt": ""}, cut=True),
        1,
        "not a valid zip",
    ),
    Case(
        "zip without extract", _zip("other.zip", {"README.txt": "hello"}), 1, "no Personne_activite"
    ),
    Case(
        "10 MB line",
        _from_clean("PS_LibreAcces_Personne_activite_l.txt", _with_long_line),
        0,
        "line 2: line of 10,000,004 characters",
    ),
    Case(
        "binary garbage",
        _file("PS_LibreAcces_Personne_activite_g.txt", bytes(range(256)) * 400),
        1,
        "not the header",
    ),
    Case(
        "renamed column",
        _from_clean(
            "PS_LibreAcces_Personne_activite_r.txt",
            lambda c: c.replace("Nom d'exercice", "Nom de famille", 1).encode(),
        ),
        1,
        "no column “Nom d'exercice”",
    ),
    Case(
        "SavoirFaire naming unknown identifiers",
        _savoir_faire_unknown,
        0,
        "names 5 identifier(s) absent from the extract (lines 2, 3, 4, 5, 6)",
    ),
    Case("FHIR Bundle of invalid resources", _bad_bundle, 1, "no practitioner"),
    Case(
        "empty FHIR Bundle",
        _file("b.json", '{"resourceType": "Bundle", "entry": []}'),
        1,
        "no practitioner",
    ),
    Case(
        "truncated FHIR JSON",
        _file("t.json", '{"resourceType": "Bundle", "entry": [{"res'),
        1,
        "no practitioner",
    ),
    Case("0-byte NDJSON", _file("z.ndjson", b""), 1, "no practitioner"),
    Case(
        "garbage NDJSON", _file("g.ndjson", b"\x00\xff garbage\n{not json\n"), 1, "no practitioner"
    ),
    Case(
        "Bundle of a Patient",
        _file(
            "p.json",
            '{"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient"}}]}',
        ),
        1,
        "no practitioner",
    ),
    Case(
        "cut download",
        _from_clean("PS_LibreAcces_Personne_activite_c.txt", _cut_download),
        1,
        "--allow-shrink",
    ),
    Case(
        "a damaged byte in a UTF-8 file",
        _from_clean("PS_LibreAcces_Personne_activite_d.txt", _damaged_byte),
        0,
        # Last: the damaged line's activity is gone, which the cases after would see.
        "not valid UTF-8 text",
    ),
]


def _disk_full_while_spilling(monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spill.Shard, "_flush", full)


def _database_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's own 'disk full': the database may not grow past its current size."""
    begin = generation_sqlite.SqliteGeneration.begin

    async def begin_then_cap(self: generation_sqlite.SqliteGeneration) -> None:
        await begin(self)
        await self.db.execute("VACUUM")  # no free pages left for the import to reuse
        async with self.db.execute("PRAGMA page_count") as cursor:
            pages = int((await cursor.fetchone() or (0,))[0])
        await self.db.execute(f"PRAGMA max_page_count = {pages + 2}")

    monkeypatch.setattr(generation_sqlite.SqliteGeneration, "begin", begin_then_cap)


def _state(db: Path) -> tuple[int, int, list[tuple[str, str]]]:
    with sqlite3.connect(db) as conn:
        people = conn.execute("SELECT rpps, last_name FROM directory_practitioner ORDER BY rpps")
        found = [(str(a), str(b)) for a, b in people]
        imports = int(conn.execute("SELECT count(*) FROM directory_import").fetchone()[0])
        changes = int(conn.execute("SELECT count(*) FROM directory_change").fetchone()[0])
    return imports, changes, found


def _import(path: Path, url: str, *extra: str) -> tuple[int, str]:
    result = runner.invoke(directory_app, ["import", str(path), "--db", url, *extra])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{path.name}: {result.exception!r}"
    )
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def test_every_bad_file_gets_a_clear_answer_and_leaves_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "bridge.db"
    url = initialised_sqlite(db)
    clean = demo_extract(tmp_path, lines=600)
    status, output = _import(clean, url)
    assert status == 0, output
    text = clean.read_text(encoding="utf-8")
    files = tmp_path / "files"
    files.mkdir()
    failures = []
    for case in CASES:
        before = _state(db)
        status, output = _import(case.make(files, text), url)
        after = _state(db)
        refused = status != 0
        if (status, case.says in output) != (case.status, True):
            failures.append(f"{case.name}: exit {status}, said {output.strip()[-300:]!r}")
        elif refused and ("\nError: " not in f"\n{output}" or after != before):
            failures.append(f"{case.name}: refused but {output[:80]!r}, changed {after != before}")
        elif not refused and after[2] != before[2]:
            failures.append(f"{case.name}: the practitioners changed")
    assert not failures, "\n".join(failures)

    for simulate, says in ((_disk_full_while_spilling, "No space left"), (_database_full, "full")):
        with monkeypatch.context() as patch:
            simulate(patch)
            before = _state(db)
            status, output = _import(clean, url)
            assert (status, "\nError: " in f"\n{output}", says in output) == (1, True, True), output
            assert _state(db) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("bridge.db")) in (
        ["bridge.db"],
        ["bridge.db", "bridge.db-shm", "bridge.db-wal"],
        ["bridge.db", "bridge.db.import-lock"],
        ["bridge.db", "bridge.db-shm", "bridge.db-wal", "bridge.db.import-lock"],
    )

    cut = files / "PS_LibreAcces_Personne_activite_c.txt"
    status, output = _import(cut, url, "--allow-shrink")
    assert status == 0 and "disappeared from the register" in output, output
