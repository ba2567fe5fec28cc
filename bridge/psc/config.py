"""The mapping provider's configuration, as written in homeserver.yaml.

    oidc_providers:
      - idp_id: psc
        ...
        user_mapping_provider:
          module: bridge.psc.PscMappingProvider
          config:
            bridge_url: "http://127.0.0.1:8780"
            bridge_token_file: "/etc/caducee/psc-bridge.token"

`bridge_token_file` holds the bridge service token reserved for sign-ins (a file, mode
0600, so homeserver.yaml holds no secret). Unknown keys are refused, like in the guard, so a
typo stops Synapse at start instead of leaving sign-in half configured.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from synapse.module_api.errors import ConfigError

_KNOWN_KEYS = frozenset({"bridge_url", "bridge_token_file"})
MIN_TOKEN_LENGTH = 32


@dataclass(frozen=True)
class PscMapperConfig:
    bridge_url: str
    bridge_token: str

    def __repr__(self) -> str:  # never print the token
        return f"PscMapperConfig(bridge_url={self.bridge_url!r})"


def _error(key: str, problem: str) -> ConfigError:
    return ConfigError(f"Caducée PSC sign-in: {key}: {problem}", (key,))


def _read_token(path: str) -> str:
    try:
        info = os.stat(path)
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
    except OSError as exc:
        raise _error("bridge_token_file", f"cannot read {path}: {exc.strerror or exc}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise _error("bridge_token_file", f"{path} must be readable by its owner only (0600)")
    if len(token) < MIN_TOKEN_LENGTH:
        raise _error("bridge_token_file", f"{path} holds no bridge service token (too short)")
    return token


def parse_config(config: Mapping[str, Any] | None) -> PscMapperConfig:
    config = config or {}
    unknown = sorted(set(config) - _KNOWN_KEYS)
    if unknown:
        raise _error(unknown[0], f"unknown key (known: {', '.join(sorted(_KNOWN_KEYS))})")
    url = config.get("bridge_url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise _error("bridge_url", "must be the bridge's base URL, like 'http://127.0.0.1:8780'")
    if not urlsplit(url).netloc:
        raise _error("bridge_url", f"{url!r} has no host")
    path = config.get("bridge_token_file")
    if not isinstance(path, str) or not path:
        raise _error("bridge_token_file", "must name the file holding the bridge service token")
    return PscMapperConfig(bridge_url=url.rstrip("/"), bridge_token=_read_token(path))
