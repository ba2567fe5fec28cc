"""`caducee` starts without loading the libraries its commands run on.

`caducee --help`, `caducee local status` and every command's `--help` answer at once: the
database, Matrix, HTTP, Synapse and FHIR libraries are imported by the commands that use them,
when they run. These tests check what is imported (in a fresh interpreter), not how long it
takes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

# Top-level packages a command may use once it runs, never to start or show its help.
HEAVY = frozenset(
    {
        "aiohttp",
        "aiosqlite",
        "alembic",
        "asyncpg",
        "cryptography",
        "fhir",
        "jinja2",
        "nio",
        "peewee",
        "signedjson",
        "sqlalchemy",
        "synapse",
        "twisted",
        "vodozemac",
    }
)

REPORT_HEAVY = f"""
import json, sys
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & {set(HEAVY)!r})))
"""


def _heavy_loaded(code: str, tmp_path: Path) -> list[str]:
    """The heavy packages imported once `code` has run in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", code + REPORT_HEAVY],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PATH": "/usr/bin:/bin", "CADUCEE_STATE_DIR": str(tmp_path / "no-demo")},
    )
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_command_line_loads_no_heavy_library(tmp_path: Path) -> None:
    assert _heavy_loaded("import deploy.cli", tmp_path) == []


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["local", "status", "--json"],
        ["bot", "run", "--help"],
        ["bridge", "check-config", "--help"],
        ["directory", "import", "--help"],
        ["admin", "onboard", "--help"],
        ["admin", "--help"],
        ["admin", "peer", "add", "--help"],
    ],
    ids=" ".join,
)
def test_help_and_local_status_load_no_heavy_library(tmp_path: Path, args: list[str]) -> None:
    code = (
        "from typer.testing import CliRunner\n"
        "from deploy.cli import app\n"
        f"result = CliRunner().invoke(app, {args!r})\n"
        "assert result.exception is None or isinstance(result.exception, SystemExit), "
        "result.output\n"
    )
    assert _heavy_loaded(code, tmp_path) == []


def test_admin_lists_and_runs_the_registry_commands() -> None:
    from bridge.admin.cli import admin_app

    listing = CliRunner().invoke(admin_app, ["--help"], env={"COLUMNS": "200"})
    assert listing.exit_code == 0, listing.output
    for group in ("onboard", "audit", "member", "homeserver", "peer", "key"):
        assert f" {group} " in listing.output
    nested = CliRunner().invoke(admin_app, ["peer", "add", "--help"], env={"COLUMNS": "200"})
    assert nested.exit_code == 0, nested.output
    assert "Usage: " in nested.output and "peer add" in nested.output


def test_the_demo_state_is_found_where_the_launcher_writes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deploy.local import state

    monkeypatch.delenv("CADUCEE_STATE_DIR", raising=False)
    assert state.default_state_dir() == state.REPO_ROOT / "var" / "local"
    monkeypatch.setenv("CADUCEE_STATE_DIR", str(tmp_path))
    assert state.default_state_dir() == tmp_path
    assert state.read_state(tmp_path) is None
    assert state.stop_from_state(tmp_path) is False  # nothing runs: nothing to stop
    written = {"launcher_pid": 1, "homeservers": [{"server_name": "localhost:8481"}]}
    (tmp_path / state.STATE_FILE).write_text(json.dumps(written))
    assert state.read_state(tmp_path) == written
