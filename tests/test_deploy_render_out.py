"""`caducee deploy render` writes under --out and nowhere else; `deploy init` creates the data.

Render used to create `/var/lib/caducee/{synapse,bridge,bot}` and a signing key on the machine
that ran it, whatever the layout. It now writes configuration only; the data folders (a
setting, `--data-dir`, default `/var/lib/caducee`) and Synapse's signing key are created by
`caducee deploy init` where the deployment runs, once, never replacing a key.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from deploy.production.cli import DEFAULT_DATA_DIR, deploy_app
from deploy.production.envfile import SECRET_KEYS


def _env_file(path: Path) -> Path:
    values = {
        "CADUCEE_SERVER_NAME": "sante-nord.test",
        "CADUCEE_MATRIX_HOST": "matrix.sante-nord.test",
        "CADUCEE_ELEMENT_HOST": "element.sante-nord.test",
        "CADUCEE_ADMIN_EMAIL": "admin@sante-nord.test",
        "CADUCEE_FEDERATION_MEMBERS": "sante-sud.test",
    } | {name: f"secret-{name.lower()}-{'x' * 32}" for name in SECRET_KEYS}
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    os.chmod(path, 0o600)
    return path


def _everything(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def _listing(path: Path) -> list[str] | None:
    return sorted(os.listdir(path)) if path.is_dir() else None


@pytest.mark.parametrize("layout", ["containers", "host"])
def test_render_writes_under_out_and_nowhere_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home)
    env = _env_file(tmp_path / "settings.env")
    data = tmp_path / "data"
    default_before = _listing(DEFAULT_DATA_DIR)
    out = tmp_path / "out"
    args = ["render", "--env-file", str(env), "--out", str(out), "--layout", layout]
    result = CliRunner().invoke(deploy_app, [*args, "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert f"caducee deploy init --config {out / 'deployment.yaml'}" in result.stdout
    # only the configuration, only under --out
    outside = {path for path in _everything(tmp_path) if not path.startswith("out")}
    assert outside == {"home", "settings.env"}
    assert not data.exists()
    assert _listing(DEFAULT_DATA_DIR) == default_before
    homeserver = yaml.safe_load((out / "synapse" / "homeserver.yaml").read_text())
    assert homeserver["signing_key_path"] == str(data / "synapse" / "signing.key")
    assert homeserver["media_store_path"] == str(data / "synapse" / "media_store")
    assert not any("signing.key" in name for name in _everything(out))

    # the defaults name /var/lib/caducee, and still create nothing there
    result = CliRunner().invoke(deploy_app, [*args[:4], str(tmp_path / "out2")])
    assert result.exit_code == 0, result.output
    rendered = yaml.safe_load((tmp_path / "out2" / "bridge" / "bridge.yaml").read_text())
    assert rendered["data_dir"] == str(DEFAULT_DATA_DIR / "bridge")
    assert _listing(DEFAULT_DATA_DIR) == default_before


def test_init_creates_the_data_folders_and_the_key_once(tmp_path: Path) -> None:
    env = _env_file(tmp_path / "settings.env")
    out, data = tmp_path / "out", tmp_path / "data"
    args = ["render", "--env-file", str(env), "--out", str(out), "--data-dir", str(data)]
    assert CliRunner().invoke(deploy_app, args).exit_code == 0
    manifest = out / "deployment.yaml"
    first = CliRunner().invoke(deploy_app, ["init", "--config", str(manifest)])
    assert first.exit_code == 0, first.output
    key = data / "synapse" / "signing.key"
    assert f"created signing key {key}" in first.stdout
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    for folder in ("synapse", "synapse/media_store", "synapse/logs", "bridge", "bot/store"):
        assert stat.S_IMODE((data / folder).stat().st_mode) == 0o700, folder
    content = key.read_bytes()
    again = CliRunner().invoke(deploy_app, ["init", "--config", str(manifest)])
    assert again.exit_code == 0 and "nothing changed" in again.stdout
    assert key.read_bytes() == content  # never replaced: other servers know this key


def test_init_and_render_refuse_unusable_settings(tmp_path: Path) -> None:
    missing = CliRunner().invoke(deploy_app, ["init", "--config", str(tmp_path / "none.yaml")])
    assert missing.exit_code == 2 and missing.stderr.startswith("Error: ")
    old = tmp_path / "deployment.yaml"
    old.write_text("databases: {}\npaths: {}\n")  # rendered before init existed
    result = CliRunner().invoke(deploy_app, ["init", "--config", str(old)])
    assert result.exit_code == 2 and "render it again" in result.stderr
    env = _env_file(tmp_path / "settings.env")
    args = ["render", "--env-file", str(env), "--out", str(tmp_path / "o"), "--data-dir", "rel"]
    result = CliRunner().invoke(deploy_app, args)
    assert result.exit_code == 2 and "absolute" in result.stderr
    assert not (tmp_path / "o").exists()


def test_render_and_secrets_take_their_settings_with_c_like_every_command(tmp_path: Path) -> None:
    """`-c`/`--config` name the .env as `--env-file` does: the same files, byte for byte."""
    env = _env_file(tmp_path / "settings.env")
    import shutil

    outputs = {}
    out = tmp_path / "out"
    for option in ("--env-file", "--config", "-c"):
        shutil.rmtree(out, ignore_errors=True)
        args = ["render", option, str(env), "--out", str(out), "--data-dir", str(tmp_path / "d")]
        result = CliRunner().invoke(deploy_app, args)
        assert result.exit_code == 0, (option, result.output)
        outputs[option] = {
            str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
        }
    assert outputs["--env-file"] == outputs["--config"] == outputs["-c"]
    missing = tmp_path / "absent.env"
    result = CliRunner().invoke(deploy_app, ["render", "-c", str(missing), "--out", str(tmp_path)])
    assert result.exit_code == 2 and result.stderr.startswith("Error: ")
    assert len(result.stderr.splitlines()) == 1 and str(missing) in result.stderr
    fresh = tmp_path / "new.env"
    result = CliRunner().invoke(deploy_app, ["secrets", "-c", str(fresh)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600


def test_render_and_secrets_say_the_same_of_a_env_that_is_not_utf8(tmp_path: Path) -> None:
    env = tmp_path / "ff.env"
    env.write_bytes(b"CADUCEE_SERVER_NAME=x\nSECRET=\xff\xfe\n")
    said = []
    for args in (["secrets", "-c", str(env)], ["render", "-c", str(env), "--out", "o"]):
        result = CliRunner().invoke(deploy_app, args)
        assert result.exit_code == 2, result.output
        said.append(result.stderr)
    assert said == [f"Error: {env}: cannot read: not UTF-8 text\n"] * 2
    assert env.read_bytes() == b"CADUCEE_SERVER_NAME=x\nSECRET=\xff\xfe\n"
