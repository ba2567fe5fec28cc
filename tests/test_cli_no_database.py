"""No command but `init` creates a database: pointed at a wrong path, every other command says
where it looked and which `init` to run, exits 1, and leaves no file behind.

A mistyped path, a failed mount or a wrong database name must never become a new, empty
database: the bridge would serve an empty directory and registry (cutting the federation off),
an import would fill a directory no bridge reads, and an audit would read a log that was never
written. The command tree is read from the CLI itself, so a command added tomorrow is tried
too, unless it is listed below as one that never opens a database.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from signedjson.key import generate_signing_key
from typer.testing import CliRunner

from bridge.registry.keys import fingerprint_of
from deploy.cli import app
from tests.directory_support import demo_extract
from tests.test_cli_tree import COMMANDS, Command

# Commands that never open a service's database (or create one on purpose: `init`).
NO_DATABASE = {
    ("bridge", "init"),
    ("bot", "init"),
    ("bridge", "check-config"),
    ("bot", "check-config"),
    ("bot", "pending-resets"),  # reads the pins file only
}
OTHER_GROUPS = {"local", "deploy"}  # the demo's state folder; deployments (tests of their own)
DOCTOR = "@dr.martin:own.test"


def _tried() -> list[Command]:
    return [c for c in COMMANDS if c.group not in OTHER_GROUPS and c.path not in NO_DATABASE]


def test_every_database_command_is_tried() -> None:
    names = {" ".join(c.path) for c in _tried()}
    assert {
        "admin audit",
        "admin member list",
        "admin peer add",
        "admin key show",  # it would make a signing key no bridge uses
        "directory import",
        "directory search",
        "directory changes",
        "bot audit",
        "bot forget-identity",
        "bridge run",
        "bot run",
    } <= names
    assert len(names) >= 20


def _setup(root: Path) -> dict[str, Path]:
    """A bridge and a bot configuration whose databases were never created, and inputs good
    enough to reach the database (each command validates its arguments first)."""
    bridge = root / "bridge.yaml"
    bridge.write_text(
        yaml.safe_dump(
            {
                "server_name": "own.test",
                "homeserver_url": "http://127.0.0.1:9",
                "federation_name": "Réseau test",
                "data_dir": str(root / "bridge-data"),  # a mount that did not happen
                "listen_port": 9,
            }
        )
    )
    (root / "bridge-data").mkdir()
    store = root / "bot-store"  # the volume is there, its database is not
    store.mkdir(mode=0o700)
    pins = {
        "pinned": {DOCTOR: "old-master-key"},
        "changed": {DOCTOR: "new-master-key"},
        "changed_at": {DOCTOR: 1},
    }
    (store / "trusted_identities.json").write_text(json.dumps(pins))
    bot = root / "bot.yaml"
    bot.write_text(
        yaml.safe_dump(
            {
                "homeserver_url": "http://127.0.0.1:9/",
                "user_id": "@caducee:own.test",
                "password": "a real password",
                "store_dir": str(store),
                "pickle_key_file": str(root / "bot-secrets" / "pickle"),
                "member_servers": ["other.test"],
            }
        )
    )
    csv = root / "batch.csv"
    csv.write_text("rpps\n10009999995\n")
    return {
        "bridge": bridge,
        "bot": bot,
        "csv": csv,
        "extract": demo_extract(root, lines=20),
        "bridge_db": root / "bridge-data" / "bridge.db",
        "bot_db": store / "bot.db",
    }


GOOD_VALUES = {
    "rpps": "10009999995",
    "matrix_id": DOCTOR,
    "user_id": DOCTOR,
    "name": "CHU Nord",
    "member": "CHU Nord",
    "server_name": "hs.chu-nord.fr",
    "url": "https://peer.example.test",
    "peer": "https://peer.example.test",
    "fingerprint": fingerprint_of(generate_signing_key("p1")),
    "query": "martin",
}


def _args(command: Command, files: dict[str, Path]) -> list[str]:
    args = list(command.path)
    for param in command.params:
        if param.name == "config":
            value = str(files["bot" if command.group == "bot" else "bridge"])
        elif param.name == "path":
            value = str(files["extract"])
        elif param.name == "file":
            value = str(files["csv"])
        elif param.name in GOOD_VALUES and param.required:
            value = GOOD_VALUES[param.name]
        else:
            continue
        args += [value] if param.option is None else [param.option, value]
    return args


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def test_no_command_creates_a_missing_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _setup(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CADUCEE_BRIDGE_DB", raising=False)
    before = _files(tmp_path)
    problems = []
    for command in _tried():
        args = _args(command, files)
        result = CliRunner().invoke(app, args)
        service = "bot" if command.group == "bot" else "bridge"
        config = files[service]
        expected = f"Error: no {service} database at {files[f'{service}_db']}; nothing was created"
        lines = result.stderr.splitlines()
        made = sorted(str(p.relative_to(tmp_path)) for p in _files(tmp_path) - before)
        if (
            result.exit_code != 1
            or len(lines) != 1
            or not lines[0].startswith(expected)
            or f"`caducee {service} init -c {config}`" not in lines[0]
            or "Traceback" in result.output
            or made
        ):
            problems.append(
                f"{' '.join(args)}: exit {result.exit_code}, made {made}, "
                f"said {result.output.strip()[-300:]!r}"
            )
    assert not problems, "\n".join(problems)


def test_a_wrong_db_url_is_refused_by_every_directory_command(tmp_path: Path) -> None:
    """`--db` (or `CADUCEE_BRIDGE_DB`) names the database without a configuration file."""
    extract = demo_extract(tmp_path, lines=20)
    wrong = tmp_path / "brdige.db"
    for args in (["import", str(extract)], ["search", "martin"], ["changes"]):
        result = CliRunner().invoke(app, ["directory", *args, "--db", f"sqlite:///{wrong}"])
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith(f"Error: no bridge database at {wrong}; nothing was")
        assert "caducee bridge init" in result.stderr and "Traceback" not in result.output
        assert not wrong.exists()


@pytest.mark.postgres
async def test_an_empty_postgresql_database_is_refused_and_left_empty(tmp_path: Path) -> None:
    """A wrong database name that happens to exist (empty) is no database either: every
    command refuses it and writes no table into it."""
    import asyncio

    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import create_async_engine

    from tests.bot_commands_support import fresh_postgres_database

    files = _setup(tmp_path)
    async for url in fresh_postgres_database():
        for service in ("bridge", "bot"):
            data = yaml.safe_load(files[service].read_text())
            files[service].write_text(yaml.safe_dump({**data, "database_url": url}))
        for args in (
            ["admin", "member", "list", "-c", str(files["bridge"])],
            ["admin", "audit", "-c", str(files["bridge"])],
            ["directory", "import", str(files["extract"]), "-c", str(files["bridge"])],
            ["directory", "search", "martin", "-c", str(files["bridge"])],
            ["bot", "audit", "-c", str(files["bot"])],
            ["bot", "forget-identity", DOCTOR, "-c", str(files["bot"])],
        ):
            # Each command runs its own event loop, as from a shell: not on this test's.
            result = await asyncio.to_thread(CliRunner().invoke, app, args)
            assert result.exit_code == 1, (args, result.output)
            assert "is empty; nothing was created" in result.stderr, (args, result.stderr)
            assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.output
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                names = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
        finally:
            await engine.dispose()
        assert names == []


def test_check_config_says_which_database_is_not_there_yet_and_what_creates_it(
    tmp_path: Path,
) -> None:
    files = _setup(tmp_path)
    for service in ("bridge", "bot"):
        config = files[service]
        result = CliRunner().invoke(app, [service, "check-config", "-c", str(config)])
        assert result.exit_code == 0, result.output
        assert (
            f"{files[f'{service}_db']} (not created yet: `caducee {service} init -c {config}`)"
            in (result.stdout)
        )
        made = CliRunner().invoke(app, [service, "init", "-c", str(config)])
        assert made.exit_code == 0, made.output
        result = CliRunner().invoke(app, [service, "check-config", "-c", str(config)])
        assert result.exit_code == 0 and "not created yet" not in result.stdout


def test_check_config_refuses_a_data_dir_that_can_never_be_a_folder(tmp_path: Path) -> None:
    """`admin key show`, `bridge init` and `run` would all fail on it: check-config says so
    instead of OK."""
    files = _setup(tmp_path)
    config = tmp_path / "unusable.yaml"
    data = yaml.safe_load(files["bridge"].read_text())
    config.write_text(yaml.safe_dump({**data, "data_dir": str(files["csv"] / "data")}))
    result = CliRunner().invoke(app, ["bridge", "check-config", "-c", str(config)])
    assert result.exit_code == 2 and "OK" not in result.stdout
    assert result.stderr == (
        f"Error: {config}: data_dir {files['csv'] / 'data'} cannot be a folder: "
        f"{files['csv']} is a file\n"
    )
