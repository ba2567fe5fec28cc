"""The bridge's configuration: a good file loads, every mistake is named, examples are refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.config import (
    MIN_TOKEN_LENGTH,
    BridgeConfig,
    ConfigError,
    example_values,
    is_valid_server_name,
    load_config,
    parse_config,
)

TOKEN = "t" * MIN_TOKEN_LENGTH
REPO = Path(__file__).resolve().parents[1]


def good_settings(**overrides: Any) -> dict[str, Any]:
    """The shipped example with its placeholders replaced, as an operator would do."""
    data = example_values()
    data.update(
        server_name="clinic.test:8448",
        homeserver_url="http://127.0.0.1:8008",
        federation_name="Réseau de test",
        service_tokens=[{"name": "bot", "token": TOKEN}],
    )
    data.update(overrides)
    return data


def write(tmp_path: Path, data: object, name: str = "bridge.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def error_of(data: object) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="bridge.yaml")
    return str(info.value)


def test_edited_example_loads_with_defaults_resolved_next_to_the_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, good_settings()))
    assert config.server_name == "clinic.test:8448"
    assert config.homeserver_url == "http://127.0.0.1:8008"
    assert config.data_dir == tmp_path / "data"
    assert config.effective_database_url == f"sqlite+aiosqlite:///{tmp_path}/data/bridge.db"
    assert config.listen_host == "127.0.0.1"
    assert config.allowed_servers == frozenset({"clinic.test:8448"})


def test_default_data_dir_is_next_to_the_file_not_the_working_directory(tmp_path: Path) -> None:
    data = good_settings()
    del data["data_dir"]
    config = load_config(write(tmp_path, data))
    assert config.data_dir == tmp_path / "data"
    assert config.effective_database_url == f"sqlite+aiosqlite:///{tmp_path}/data/bridge.db"


def test_shipped_example_is_refused_naming_the_fields_to_edit(tmp_path: Path) -> None:
    example = REPO / "bridge" / "example-config.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(example)
    message = str(info.value)
    assert "example value" in message
    for field in ("server_name", "homeserver_url", "federation_name"):
        assert field in message


def test_example_service_token_is_refused() -> None:
    data = good_settings()
    data["service_tokens"] = example_values()["service_tokens"]
    assert "service token 'bot' still has its example value" in error_of(data)


def test_short_service_token_is_refused_with_a_way_to_make_one() -> None:
    message = error_of(good_settings(service_tokens=[{"name": "bot", "token": "secret"}]))
    assert "too short" in message
    assert "openssl rand -hex 32" in message


def test_token_file_is_read_and_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "bot.token").write_text(TOKEN + "\n", encoding="utf-8")
    path = write(
        tmp_path, good_settings(service_tokens=[{"name": "bot", "token_file": "bot.token"}])
    )
    config = load_config(path)
    assert config.service_token_for(TOKEN) is not None
    assert config.service_token_for(TOKEN[:-1] + "x") is None


def test_missing_token_file_names_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path, good_settings(service_tokens=[{"name": "bot", "token_file": "no.token"}])
    )
    with pytest.raises(ConfigError, match=r"cannot read .*no\.token"):
        load_config(path)


def test_token_and_token_file_together_are_refused() -> None:
    tokens = [{"name": "bot", "token": TOKEN, "token_file": "x"}]
    assert "exactly one of token, token_file" in error_of(good_settings(service_tokens=tokens))


def test_duplicate_service_token_names_or_secrets_are_refused() -> None:
    same_name = [{"name": "bot", "token": TOKEN}, {"name": "bot", "token": "u" * 40}]
    assert "names must be unique" in error_of(good_settings(service_tokens=same_name))
    same_secret = [{"name": "bot", "token": TOKEN}, {"name": "cron", "token": TOKEN}]
    assert "same secret" in error_of(good_settings(service_tokens=same_secret))


def test_secrets_do_not_appear_in_repr_or_errors() -> None:
    config = parse_config(good_settings())
    assert TOKEN not in repr(config)
    message = error_of(good_settings(listen_port=0, service_tokens=[{"name": "b", "token": TOKEN}]))
    assert TOKEN not in message


def test_every_field_error_is_listed_with_its_path() -> None:
    message = error_of(
        good_settings(listen_port=70000, homeserver_url="ftp://x", lisen_host="127.0.0.2")
    )
    assert message.startswith("bridge.yaml: invalid configuration:")
    assert "listen_port: Input should be less than or equal to 65535" in message
    assert "homeserver_url: 'ftp://x' is not an http:// or https:// URL" in message
    assert "lisen_host: unknown field (typo?)" in message


def test_required_fields_are_named_when_missing() -> None:
    data = good_settings()
    del data["server_name"]
    assert "server_name: required field missing" in error_of(data)


def test_bad_server_names_are_refused() -> None:
    assert "is not a Matrix server name" in error_of(good_settings(server_name="a b"))
    allowed = ["clinic.test", "@user:clinic.test"]
    assert "openid_allowed_servers.1" in error_of(good_settings(openid_allowed_servers=allowed))


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("example.org", True),
        ("localhost:8481", True),
        ("127.0.0.1:8448", True),
        ("[::1]:8448", True),
        ("example.org:0", False),
        ("example.org:99999", False),
        ("exa mple.org", False),
        ("-example.org", False),
        ("", False),
    ],
)
def test_server_name_syntax(name: str, valid: bool) -> None:
    assert is_valid_server_name(name) is valid


def test_database_url_needs_an_async_driver() -> None:
    message = error_of(good_settings(database_url="postgresql://u@localhost/db"))
    assert "async drivers" in message
    config = parse_config(good_settings(database_url="postgresql+asyncpg://u@localhost/db"))
    assert config.effective_database_url == "postgresql+asyncpg://u@localhost/db"


def test_top_level_must_be_a_mapping() -> None:
    assert "expected a mapping" in error_of(["server_name"])


def test_yaml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text("server_name: a.test\nlisten_port: [8780\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bridge\.yaml: line \d+, column \d+: not valid YAML"):
        load_config(path)


def test_missing_file_points_to_the_example(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no such file .*example-config\.yaml"):
        load_config(tmp_path / "absent.yaml")


def test_allowed_servers_come_from_the_config_when_given() -> None:
    config = parse_config(good_settings(openid_allowed_servers=["clinic.test:8448", "b.test"]))
    assert config.allowed_servers == frozenset({"clinic.test:8448", "b.test"})
    assert isinstance(config, BridgeConfig)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", "from bridge.cli import bridge_app; bridge_app()", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_cli_bad_config_prints_one_clear_error_and_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, good_settings(listen_port="eighty"))
    result = _cli("run", "--config", str(path))
    assert result.returncode == 2
    assert "listen_port" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_example_config_is_refused_without_traceback() -> None:
    result = _cli("run", "--config", str(REPO / "bridge" / "example-config.yaml"))
    assert result.returncode == 2
    assert "still have the example value" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_check_config_summarises_without_secrets(tmp_path: Path) -> None:
    path = write(tmp_path, good_settings())
    result = _cli("check-config", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert "server_name: clinic.test:8448" in result.stdout
    assert "service tokens: bot" in result.stdout
    assert TOKEN not in result.stdout


def test_cli_check_config_hides_the_database_password(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://caducee:pg-pass-123@127.0.0.1:5432/bridge"
    result = _cli("check-config", "--config", str(write(tmp_path, good_settings(database_url=url))))
    assert result.returncode == 0, result.stderr
    assert "pg-pass-123" not in result.stdout
    assert "postgresql+asyncpg://caducee:***@127.0.0.1:5432/bridge" in result.stdout
