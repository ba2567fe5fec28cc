"""`caducee directory import|search|changes` as an admin runs them: output and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bridge.directory.cli import DB_ENV, directory_app
from tests.directory_support import demo_extract, initialised_sqlite, write_lines

runner = CliRunner()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return initialised_sqlite(tmp_path / "bridge.db")


def test_import_then_search_in_text_and_json(tmp_path: Path, db_url: str) -> None:
    extract = demo_extract(tmp_path, lines=300)
    result = runner.invoke(directory_app, ["import", str(extract), "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "300 lines" in result.output and "First import" in result.output
    result = runner.invoke(directory_app, ["search", "mart leg", "--db", db_url])
    assert result.exit_code == 0
    assert "Dr Anne-Sophie MARTIN-LÉGER — Médecin, Cardiologie" in result.output
    result = runner.invoke(
        directory_app, ["search", "cardio lyon", "--json", "--limit", "2", "--db", db_url]
    )
    payload = json.loads(result.output)
    assert payload["total"] >= 2 and len(payload["results"]) == 2
    assert set(payload["results"][0]) == {
        "rpps",
        "display_name",
        "profession",
        "specialty",
        "city",
        "postcode",
        "matrix_id",
    }


def test_database_from_the_environment_and_change_list(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DB_ENV, db_url)
    first = demo_extract(tmp_path, lines=100)
    assert runner.invoke(directory_app, ["import", str(first)]).exit_code == 0
    lines = first.read_text().splitlines(keepends=True)
    second = tmp_path / "second.txt"
    second.write_text("".join(x for x in lines if "|10008888884|" not in x))
    result = runner.invoke(directory_app, ["import", str(second)])
    assert "disappeared from the register: 1" in result.output
    result = runner.invoke(directory_app, ["changes", "--kind", "disappeared"])
    assert result.exit_code == 0 and "10008888884  DUPONT JEAN" in result.output


def test_bad_inputs_are_one_clear_line(tmp_path: Path, db_url: str) -> None:
    result = runner.invoke(directory_app, ["import", str(tmp_path / "nope.zip"), "--db", db_url])
    assert result.exit_code == 1
    assert "no such file" in result.output and "Traceback" not in result.output
    broken = write_lines(tmp_path / "x.txt", ["8|1|broken"] * 3)
    result = runner.invoke(
        directory_app, ["import", str(broken), "--max-errors", "1", "--db", db_url]
    )
    assert result.exit_code == 1
    assert "line 2:" in result.output and "the directory is unchanged" in result.output
    result = runner.invoke(directory_app, ["search", "x", "--db", "mysql://nobody@localhost/x"])
    assert result.exit_code == 1 and "unsupported database URL" in result.output
    result = runner.invoke(directory_app, ["changes", "--kind", "gone", "--db", db_url])
    assert result.exit_code == 2


def test_no_directory_command_creates_a_database_and_search_says_when_nothing_was_imported(
    tmp_path: Path, db_url: str
) -> None:
    mistyped = tmp_path / "brige.db"
    extract = demo_extract(tmp_path, lines=20)
    for command in (["search", "martin"], ["changes"], ["import", str(extract)]):
        result = runner.invoke(directory_app, [*command, "--db", f"sqlite:///{mistyped}"])
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith(f"Error: no bridge database at {mistyped}; nothing was")
        assert "caducee bridge init" in result.stderr and "Traceback" not in result.output
        assert not mistyped.exists()
    empty = initialised_sqlite(tmp_path / "empty.db")
    result = runner.invoke(directory_app, ["search", "martin", "--db", empty])
    assert result.exit_code == 1 and "has never been imported" in result.output


def test_changes_says_when_it_lists_only_part(tmp_path: Path, db_url: str) -> None:
    first = demo_extract(tmp_path, lines=200)
    assert runner.invoke(directory_app, ["import", str(first), "--db", db_url]).exit_code == 0
    lines = first.read_text().splitlines(keepends=True)
    second = tmp_path / "second.txt"
    second.write_text("".join(lines[:-12]))
    result = runner.invoke(directory_app, ["import", str(second), "--db", db_url, "--allow-shrink"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(directory_app, ["changes", "--limit", "2", "--db", db_url])
    assert result.exit_code == 0
    assert len(result.output.splitlines()) == 4 and "2 of " in result.output
    assert "--limit 0 lists them all" in result.output
    result = runner.invoke(directory_app, ["changes", "--limit", "0", "--db", db_url])
    assert "shown" not in result.output
