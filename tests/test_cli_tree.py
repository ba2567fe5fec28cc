"""Every `caducee` command answers bad input with one line and a documented exit status.

The command tree is read from the CLI itself, so a command added tomorrow is tried too. Each
command that takes a path, a URL or an identifier gets, one at a time, the inputs an operator
gets wrong at 3 a.m.: a 5000-character path, a byte that is not UTF-8, a folder that does not
exist, a file where a folder is expected and the reverse, an unreadable file, a .env with a
0xFF byte, a configuration that does not parse, an output under /proc. Whatever the input,
the command must not show a traceback, and must exit 0, 1 or 2 (README: exit statuses).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from deploy.cli import app

DOCUMENTED = {0, 1, 2}
NOT_UTF8 = "\udcff"  # how Python hands a program an argv byte that is not UTF-8
LONG = "x" * 5000

# Commands that run until stopped when their input is good: only inputs that must make them
# fail are given to them (never, say, a fresh state folder to `local up`).
LONG_RUNNING = {("local", "up"), ("bridge", "run"), ("bot", "run")}
IDENTIFIERS = {
    "rpps",
    "matrix_id",
    "user_id",
    "name",
    "server_name",
    "member",
    "homeserver",
    "url",
    "fingerprint",
    "peer",
    "query",
    "db",
    "kind",
}


@dataclass(frozen=True)
class Param:
    name: str
    option: str | None  # "--config" for an option, None for an argument
    is_path: bool
    required: bool


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]
    params: tuple[Param, ...]

    @property
    def group(self) -> str:
        return self.path[0]


def _commands(node: Any, path: tuple[str, ...] = ()) -> Iterator[Command]:
    subcommands = getattr(node, "commands", None)
    if subcommands is not None:
        for name, sub in sorted(subcommands.items()):
            yield from _commands(sub, (*path, name))
        return
    params = []
    for p in node.params:
        if p.name == "help" or p.param_type_name not in ("argument", "option"):
            continue
        annotation = p.type_descriptor.annotation
        is_path = "Path" in str(annotation)
        option = p.opts[0] if p.param_type_name == "option" else None
        params.append(Param(p.name, option, is_path, bool(p.required)))
    yield Command(path, tuple(params))


COMMANDS = list(_commands(typer.main.get_command(app)))


def test_the_walk_sees_the_whole_tree() -> None:
    names = {" ".join(c.path) for c in COMMANDS}
    assert {"directory import", "admin key show", "bot forget-identity", "deploy backup"} <= names
    assert len(COMMANDS) >= 25


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Good and bad files shared by every case (nothing here is changed by a command)."""
    root = tmp_path_factory.mktemp("inputs")
    bridge = root / "bridge.yaml"
    bridge.write_text(
        yaml.safe_dump(
            {
                "server_name": "own.test",
                "homeserver_url": "http://127.0.0.1:9",
                "federation_name": "Réseau test",
                "data_dir": str(root / "no-such-data"),
            }
        )
    )
    bot = root / "bot.yaml"
    bot.write_text(
        yaml.safe_dump(
            {
                "homeserver_url": "http://127.0.0.1:9/",
                "user_id": "@caducee:own.test",
                "password": "a real password",
                "store_dir": str(root / "bot-store"),
                "pickle_key_file": str(root / "bot-secrets" / "pickle"),
                "member_servers": ["other.test"],
            }
        )
    )
    unusable = root / "unusable-data.yaml"  # parses, but its data_dir is under a file
    unusable.write_text(bridge.read_text().replace(str(root / "no-such-data"), str(bot) + "/x"))
    # The bridge's database exists, as after `bridge init`: a command that takes a path gets as
    # far as that path (without it, each would stop at "no bridge database", see
    # tests/test_cli_no_database.py). `bridge init` itself gets the bad inputs.
    made = CliRunner().invoke(app, ["bridge", "init", "-c", str(bridge)])
    assert made.exit_code == 0, made.output
    broken = root / "broken.yaml"
    broken.write_text("server_name: [unclosed\n  homeserver_url: :\n")
    env_ff = root / "ff.env"
    env_ff.write_bytes(b"DOMAIN=caducee.example\nSECRET=\xff\xfe\n")
    binary = root / "binary.yaml"
    binary.write_bytes(b"server_name: \xff\xfe\n")
    a_file = root / "a-file"
    a_file.write_text("not a folder\n")
    a_folder = root / "a-folder"
    a_folder.mkdir()
    unreadable = root / "unreadable"
    unreadable.write_text("secret\n")
    unreadable.chmod(0)
    if os.geteuid() == 0:  # root reads a mode-000 file: use one no one can read instead
        unreadable = Path("/proc/self/mem")
    return {
        "bridge": bridge,
        "bot": bot,
        "broken": broken,
        "unusable": unusable,
        "env_ff": env_ff,
        "binary": binary,
        "file": a_file,
        "folder": a_folder,
        "unreadable": unreadable,
        "root": root,
    }


def _bad_paths(files: dict[str, Path], command: Command, param: Param) -> dict[str, str]:
    """The bad values a path parameter gets, by name."""
    root = files["root"]
    bad = {
        "5000-char path": str(root / LONG),
        "non-UTF-8 byte": str(root / f"bad{NOT_UTF8}name"),
        "missing folder": str(root / "no-such-folder" / "x"),
        "file as folder": str(files["file"] / "x"),
        "folder": str(files["folder"]),
        "missing file": str(root / "missing.yaml"),
        "/proc output": "/proc/b",
        "config that does not parse": str(files["broken"]),
        "not UTF-8 content": str(files["binary"]),
        ".env with 0xFF": str(files["env_ff"]),
    }
    if param.name == "config":
        bad["config whose data_dir is unusable"] = str(files["unusable"])
    if param.name not in ("out", "state_dir"):  # never write into a file no one can read
        bad["unreadable file"] = str(files["unreadable"])
    if command.path in LONG_RUNNING and param.name == "state_dir":
        # A folder that does not exist yet is a good state folder: `local up` would start.
        for good in ("missing folder", "missing file", "non-UTF-8 byte", "folder"):
            bad.pop(good)
        bad.pop("config that does not parse")
        bad.pop("not UTF-8 content")
        bad.pop(".env with 0xFF")
    return bad


BAD_IDENTIFIERS = {
    "5000 chars": LONG,
    "non-UTF-8 byte": f"a{NOT_UTF8}b",
    "empty": "",
    "not an id": "notanid",
    "URL with non-UTF-8 byte": f"sqlite:///tmp/{NOT_UTF8}.db",
}


def _baseline(files: dict[str, Path], command: Command, param: Param) -> str:
    """A sensible value for a parameter that is not the one under test."""
    if param.name == "config":
        if command.group == "bot":
            return str(files["bot"])
        if command.group in ("admin", "bridge", "directory"):
            return str(files["bridge"])
        return str(files["root"] / "missing-deployment.yaml")
    if param.name == "member":
        return "Member"
    if param.name == "fingerprint":
        return "a" * 43
    if param.is_path:
        return str(files["root"] / "missing-input")
    return "value"


def _cases(files: dict[str, Path]) -> Iterator[tuple[str, list[str]]]:
    for command in COMMANDS:
        for target in command.params:
            if not (target.is_path or target.name in IDENTIFIERS):
                continue
            if command.path in LONG_RUNNING and not target.is_path:
                continue
            values = _bad_paths(files, command, target) if target.is_path else BAD_IDENTIFIERS
            for label, value in values.items():
                args = list(command.path)
                for param in command.params:
                    if param is target:
                        chosen = value
                    elif param.required or (param.name == "config" and command.group != "deploy"):
                        chosen = _baseline(files, command, param)
                    else:
                        continue
                    args += [chosen] if param.option is None else [param.option, chosen]
                yield f"{' '.join(command.path)} {target.name}: {label}", args


@pytest.mark.slow
def test_no_command_shows_a_traceback_or_an_undocumented_status(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default ./data/bridge.db and .env land here
    monkeypatch.setenv("CADUCEE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("CADUCEE_BRIDGE_DB", raising=False)
    runner = CliRunner()
    problems = []
    tried = 0
    for label, args in _cases(files):
        tried += 1
        result = runner.invoke(app, args)
        crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
        output = result.output
        if crashed or "Traceback" in output or result.exit_code not in DOCUMENTED:
            what = type(result.exception).__name__ if crashed else f"exit {result.exit_code}"
            problems.append(f"{label}: {what}: {output.strip()[-300:]!r}")
    assert tried > 200
    assert not problems, "\n".join(problems)


def test_bot_forget_identity_refuses_what_is_not_a_matrix_id(files: dict[str, Path]) -> None:
    result = CliRunner().invoke(
        app, ["bot", "forget-identity", "notanid", "--config", str(files["bot"])]
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: 'notanid' is not a Matrix ID (like '@name:server')"


def test_a_key_show_with_an_unusable_data_dir_is_one_line(files: dict[str, Path]) -> None:
    result = CliRunner().invoke(app, ["admin", "key", "show", "-c", str(files["unusable"])])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.startswith("Error: cannot read or create the signing key")


def test_an_argument_that_is_not_utf8_is_a_usage_error(files: dict[str, Path]) -> None:
    result = CliRunner().invoke(app, ["directory", "search", "x", "--db", f"sqlite:///{NOT_UTF8}"])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ") and "not valid UTF-8" in result.stderr


def test_the_same_mistake_gets_the_same_status_everywhere(
    files: dict[str, Path], tmp_path: Path
) -> None:
    """A missing configuration is a usage error (2) in every group; a database that cannot be
    reached is a failed operation (1) for the service and for the admin commands alike."""
    runner = CliRunner()
    missing = str(tmp_path / "nonexistent.yaml")
    for args in (
        ["directory", "search", "x", "--config", missing],
        ["deploy", "backup", "--config", missing, "--out", str(tmp_path)],
        ["deploy", "restore", str(tmp_path / "a.tar.age"), "-c", missing, "-i", missing],
        ["bridge", "run", "-c", missing],
        ["admin", "member", "list", "-c", missing],
        ["bot", "run", "-c", missing],
    ):
        result = runner.invoke(app, args)
        assert (result.exit_code, result.stderr[:7]) == (2, "Error: "), (args, result.output)

    unreachable = tmp_path / "unreachable.yaml"
    data = yaml.safe_load(files["bridge"].read_text())
    data["database_url"] = f"postgresql+asyncpg://nobody@127.0.0.1:{_closed_port()}/bridge"
    data["listen_port"] = _closed_port()
    unreachable.write_text(yaml.safe_dump(data))
    for args in (["bridge", "run"], ["admin", "member", "list"], ["directory", "changes"]):
        result = runner.invoke(app, [*args, "-c", str(unreachable)])
        assert (result.exit_code, result.stderr[:7]) == (1, "Error: "), (args, result.output)


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.postgres
def test_a_wrong_postgresql_database_name_is_one_clear_line(
    files: dict[str, Path], tmp_path: Path
) -> None:
    """The server answers "no such database": every command says so, exit 1, nothing made."""
    import socket

    from sqlalchemy.engine import make_url

    from tests.bot_commands_support import postgres_admin_url

    server = make_url(postgres_admin_url())
    try:
        socket.create_connection((server.host or "127.0.0.1", server.port or 5432), 5).close()
    except OSError as exc:
        pytest.skip(f"PostgreSQL not reachable at {server.host}:{server.port} ({exc!r})")
    wrong = server.set(drivername="postgresql+asyncpg", database="caducee_no_such_database")
    config = tmp_path / "wrong-db.yaml"
    data = yaml.safe_load(files["bridge"].read_text())
    url = wrong.render_as_string(hide_password=False)
    config.write_text(yaml.safe_dump({**data, "database_url": url}))
    for args in (["bridge", "init"], ["bridge", "run"], ["admin", "member", "list"]):
        result = CliRunner().invoke(app, [*args, "-c", str(config)])
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.startswith("Error: cannot open the database")
        assert 'database "caducee_no_such_database" does not exist' in result.stderr
