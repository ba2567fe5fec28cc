"""The guard's configuration, as written under `modules:` in homeserver.yaml.

    modules:
      - module: bridge.guard.CaduceeGuard
        config:
          allowed_servers: ["localhost:8481", "localhost:8482"]
          identifier_patterns:            # optional
            - name: "IPP (hospital patient number)"
              regex: "IPP[ :]*[0-9]{8}"

`allowed_servers` is required (it may be empty: the own server is always allowed) so
that a typo cannot silently leave a homeserver talking to nobody or to everybody.
Unknown keys are refused for the same reason. With `allowed_servers_url` (the
federation bridge's `/_caducee/v1/federation/allowed_servers`), the list is refreshed
from the bridge every `refresh_seconds` (default 30) and `allowed_servers` is only the
list in force until the bridge first answers (see `bridge.guard.refresh`).

A bad configuration stops Synapse at start with a message naming the key at fault.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from synapse.module_api.errors import ConfigError

from bridge.guard.allowlist import is_valid_server_name, normalise_server_name
from bridge.guard.identifiers import NamedPattern

_KNOWN_KEYS = frozenset(
    {"allowed_servers", "identifier_patterns", "allowed_servers_url", "refresh_seconds"}
)
MAX_REFRESH_SECONDS = 3600


@dataclass(frozen=True)
class GuardConfig:
    allowed_servers: tuple[str, ...]
    identifier_patterns: tuple[NamedPattern, ...] = ()
    allowed_servers_url: str | None = None
    refresh_seconds: float = 30.0


def _error(key: str, problem: str) -> ConfigError:
    return ConfigError(f"Caducée guard: {key}: {problem}", (key,))


def _parse_servers(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _error("allowed_servers", "must be a list of server names like 'hs.example.org:8448'")
    servers: list[str] = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not is_valid_server_name(item.strip()):
            raise _error(
                f"allowed_servers[{index}]",
                f"{item!r} is not a Matrix server name (host or host:port, e.g. 'localhost:8481')",
            )
        servers.append(normalise_server_name(item))
    return tuple(dict.fromkeys(servers))


def _parse_patterns(value: object) -> tuple[NamedPattern, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _error("identifier_patterns", "must be a list of {name, regex} entries")
    patterns: list[NamedPattern] = []
    for index, item in enumerate(value):
        key = f"identifier_patterns[{index}]"
        if not isinstance(item, Mapping) or set(item) != {"name", "regex"}:
            raise _error(key, "each entry needs exactly a 'name' and a 'regex'")
        name, regex = item["name"], item["regex"]
        if not isinstance(name, str) or not name.strip():
            raise _error(key, "'name' must be a non-empty text (it is shown to users)")
        if not isinstance(regex, str) or not regex:
            raise _error(key, "'regex' must be a non-empty text")
        try:
            compiled = re.compile(regex)
        except re.error as exc:
            raise _error(key, f"'regex' of {name!r} does not compile: {exc}") from None
        if compiled.search(""):
            raise _error(
                key, f"'regex' of {name!r} matches empty text, so it would refuse everything"
            )
        patterns.append(NamedPattern(name.strip(), compiled))
    return tuple(patterns)


def parse_config(config: object) -> GuardConfig:
    """Validate the module's `config:` mapping; raise ConfigError with the key at fault."""
    if not isinstance(config, Mapping):
        raise ConfigError("Caducée guard: config must be a mapping with at least allowed_servers")
    unknown = sorted(set(map(str, config)) - _KNOWN_KEYS)
    if unknown:
        raise _error(", ".join(unknown), f"unknown key; known keys are {sorted(_KNOWN_KEYS)}")
    if "allowed_servers" not in config:
        raise _error("allowed_servers", "is required (list the federation's homeservers)")
    url: Any = config.get("allowed_servers_url")
    if url is not None and (
        not isinstance(url, str) or not url.startswith(("https://", "http://"))
    ):
        raise _error("allowed_servers_url", "must be an http(s) URL")
    refresh: Any = config.get("refresh_seconds", 30)
    if (
        isinstance(refresh, bool)
        or not isinstance(refresh, (int, float))
        or not 0 < refresh <= MAX_REFRESH_SECONDS
    ):
        raise _error(
            "refresh_seconds",
            f"must be a number of seconds, above 0, at most {MAX_REFRESH_SECONDS}",
        )
    return GuardConfig(
        allowed_servers=_parse_servers(config["allowed_servers"]),
        identifier_patterns=_parse_patterns(config.get("identifier_patterns")),
        allowed_servers_url=url,
        refresh_seconds=float(refresh),
    )
