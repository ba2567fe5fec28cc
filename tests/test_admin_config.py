"""The `admin:` section of the bridge configuration: tokens read from files, IDs checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.config import ConfigError, parse_config

TOKEN = "t" * 40


def settings(**admin: Any) -> dict[str, Any]:
    return {
        "server_name": "clinic.test",
        "homeserver_url": "http://127.0.0.1:8008",
        "service_tokens": [{"name": "bot", "token": TOKEN}],
        "admin": admin,
    }


def test_admin_tokens_are_read_relative_to_the_configuration(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "own.token").write_text("syt_own\n")
    (tmp_path / "secrets" / "b.token").write_text("syt_b")
    config = parse_config(
        settings(
            users=["@alice:clinic.test"],
            homeserver_admin_token_file="secrets/own.token",
            homeservers=[
                {
                    "server_name": "b.test",
                    "url": "https://b.test/",
                    "admin_token_file": "secrets/b.token",
                }
            ],
        ),
        base_dir=tmp_path,
    )
    assert config.admin.homeserver_admin_token is not None
    assert config.admin.homeserver_admin_token.get_secret_value() == "syt_own"
    assert config.admin.homeservers[0].token() == "syt_b"
    assert config.admin.homeservers[0].url == "https://b.test"
    assert "syt_" not in repr(config) and "syt_" not in config.model_dump_json()


def test_defaults_admit_nobody(tmp_path: Path) -> None:
    config = parse_config(settings(), base_dir=tmp_path)
    assert config.admin.users == () and config.admin.activation_hours == 72


@pytest.mark.parametrize(
    ("admin", "message"),
    [
        ({"users": ["alice"]}, "'alice' is not a Matrix user ID"),
        (
            {"homeserver_admin_token_file": "absent.token"},
            "admin token of the homeserver: cannot read",
        ),
        ({"activation_hours": 0}, "admin.activation_hours"),
        ({"public_url": "bridge.example.org"}, "is not an http:// or https:// URL"),
        ({"userz": []}, "admin.userz: unknown field"),
    ],
)
def test_admin_mistakes_are_named(tmp_path: Path, admin: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(settings(**admin), source="bridge.yaml", base_dir=tmp_path)
    assert message in str(info.value)
