"""The deployment's data folders and Synapse's signing key, created where the services run.

`caducee deploy render` writes configuration only (under `--out`). The data folders and the
homeserver's signing key are created by `caducee deploy init`, run where the deployment runs
(the compose `init` service, or the systemd unit before Synapse starts), from the `init`
section render writes into `deployment.yaml`. Both steps are idempotent: an existing key is
never replaced.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import yaml
from signedjson.key import generate_signing_key, write_signing_keys

from deploy.production.settings import Topology


class InitError(Exception):
    """The init section is missing or unusable; the message is meant for the operator."""


def data_folders(topology: Topology) -> list[Path]:
    """Every folder the services expect (0700), parents first."""
    return [
        topology.synapse_data_dir,
        topology.synapse_data_dir / "logs",
        topology.synapse_data_dir / "media_store",
        topology.bridge_data_dir,
        topology.bot_data_dir,
        topology.bot_data_dir / "store",
        topology.bot_data_dir / "secrets",
    ]


def signing_key_path(topology: Topology) -> Path:
    return topology.synapse_data_dir / "signing.key"


def ensure_signing_key(path: Path) -> bool:
    """Create the homeserver's signing key once (0600); it must survive every upgrade."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return False
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        write_signing_keys(handle, [generate_signing_key("a_" + secrets.token_hex(2))])
    return True


def create(folders: list[Path], signing_key: Path) -> list[str]:
    """Create what is missing; say what was created."""
    made = []
    for folder in folders:
        if not folder.is_dir():
            made.append(f"folder {folder}")
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
    if ensure_signing_key(signing_key):
        made.append(f"signing key {signing_key}")
    return made


def prepare_data_dirs(topology: Topology) -> None:
    """Create the data directories (0700) and the signing key.

    The bot creates its own pickle key file (0600) on first start; it is backed up with the
    crypto store it protects.
    """
    create(data_folders(topology), signing_key_path(topology))


def init_section(topology: Topology) -> dict[str, object]:
    """What `deployment.yaml` tells `caducee deploy init` to create."""
    return {
        "folders": [str(folder) for folder in data_folders(topology)],
        "signing_key": str(signing_key_path(topology)),
    }


def load_init(path: Path) -> tuple[list[Path], Path]:
    """The folders and the signing key named by the `init` section of `deployment.yaml`."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InitError(f"{path}: no such file (`caducee deploy render` writes it)") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InitError(f"{path}: cannot read: {exc}") from None
    section = data.get("init") if isinstance(data, dict) else None
    if (
        not isinstance(section, dict)
        or not isinstance(section.get("folders"), list)
        or not section.get("signing_key")
    ):
        raise InitError(f"{path}: no 'init' section: render it again with `caducee deploy render`")
    folders = [Path(str(folder)) for folder in section["folders"]]
    key = Path(str(section["signing_key"]))
    if not all(p.is_absolute() for p in [*folders, key]):
        raise InitError(f"{path}: the 'init' section must name absolute paths")
    return folders, key
