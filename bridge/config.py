"""The bridge's configuration: one YAML file, validated once at start.

An operator edits a copy of `example-config.yaml` (shipped in this package). Anything wrong in
it - a typo in a field name, a port out of range, a token left at its example value - stops the
bridge before it listens, with a message naming the file and the field. Nothing downstream
re-validates: the rest of the bridge receives a `BridgeConfig` and trusts it.

Relative paths (data directory, token files, CA file) are resolved against the directory of
the configuration file, so a configuration keeps working whatever the working directory of the
process that starts it.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Annotated, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bridge.common import config_file
from bridge.common.config_file import EXAMPLE_CONFIG_NAME as EXAMPLE_CONFIG_NAME
from bridge.common.config_file import ConfigError as ConfigError
from bridge.common.config_file import base_url as _base_url
from bridge.common.config_file import read_secret_file as _read_secret
from bridge.common.config_file import resolve_path as _resolve
from bridge.guard.ids import is_valid_server_name as is_valid_server_name
from bridge.guard.ids import user_id_server
from bridge.psc.settings import PscSettings

MIN_TOKEN_LENGTH = 32
"""Service tokens are long random strings (`openssl rand -hex 32`); short ones are refused."""

_PLACEHOLDER_MARK = "CHANGE_ME"


def _server_name(value: str) -> str:
    value = value.strip()
    if not is_valid_server_name(value):
        raise ValueError(f"{value!r} is not a Matrix server name (like 'example.org:8448')")
    return value


ServerName = Annotated[str, AfterValidator(_server_name)]
BaseUrl = Annotated[str, AfterValidator(_base_url)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class ServiceToken(_Strict):
    """A client that is not a Matrix user - the bot, scripts - identified by a shared secret."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    token: SecretStr | None = None
    token_file: Path | None = None

    @field_validator("token_file")
    @classmethod
    def _resolve_token_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolve(value, info)

    @model_validator(mode="after")
    def _load_secret(self) -> Self:
        if (self.token is None) == (self.token_file is None):
            raise ValueError(f"service token {self.name!r}: give exactly one of token, token_file")
        if self.token_file is not None:
            try:
                text = self.token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(
                    f"service token {self.name!r}: cannot read {self.token_file}: "
                    f"{exc.strerror or exc}"
                ) from None
            object.__setattr__(self, "token", SecretStr(text))
        secret = self.secret()
        if _PLACEHOLDER_MARK in secret:
            raise ValueError(
                f"service token {self.name!r} still has its example value: generate one "
                "(e.g. `openssl rand -hex 32`)"
            )
        if len(secret) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"service token {self.name!r} is too short ({len(secret)} characters, "
                f"at least {MIN_TOKEN_LENGTH}): generate one with `openssl rand -hex 32`"
            )
        return self

    def secret(self) -> str:
        assert self.token is not None  # guaranteed by the validator
        return self.token.get_secret_value()

    def matches(self, presented: str) -> bool:
        """Constant-time comparison, so response timing does not reveal the token."""
        return hmac.compare_digest(self.secret().encode(), presented.encode())


class ManagedHomeserver(_Strict):
    """A member homeserver whose accounts this bridge creates, locks and deactivates."""

    server_name: ServerName
    url: BaseUrl
    """Where its client and admin APIs answer (`/_synapse/admin` must be reachable from here)."""
    admin_token_file: Path
    """A file holding a server-admin access token of that homeserver (mode 0600)."""
    admin_token: SecretStr | None = Field(default=None, exclude=True)

    @field_validator("admin_token_file")
    @classmethod
    def _resolve_token_file(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolve(value, info)

    @model_validator(mode="after")
    def _load_token(self) -> Self:
        if self.admin_token is None:
            token = _read_secret(self.admin_token_file, f"admin token of {self.server_name}")
            object.__setattr__(self, "admin_token", token)
        return self

    def token(self) -> str:
        assert self.admin_token is not None  # loaded by the validator
        return self.admin_token.get_secret_value()


class AdminSettings(_Strict):
    """Onboarding and the admin console (bridge.admin, bridge.console)."""

    users: tuple[str, ...] = ()
    """Matrix IDs of the federation admins allowed into the console (signing in with their
    own account on their own homeserver)."""
    homeserver_admin_token_file: Path | None = None
    """Server-admin access token of `server_name`'s homeserver (at `homeserver_url`)."""
    homeserver_admin_token: SecretStr | None = Field(default=None, exclude=True)
    homeservers: tuple[ManagedHomeserver, ...] = ()
    """Other member homeservers whose practitioners' accounts this bridge manages."""
    public_url: BaseUrl | None = None
    """The bridge's address as practitioners and admins reach it (activation links, secure
    cookies when https); default http://listen_host:listen_port."""
    activation_hours: int = Field(default=72, ge=1, le=24 * 30)
    """How long an activation link sent to a newly onboarded practitioner stays valid."""
    session_hours: int = Field(default=8, ge=1, le=24 * 7)
    """How long a console sign-in lasts."""
    lock_departed_after_import: bool = True
    """After each directory import, lock the accounts of practitioners who left the register
    (reversible: unlock in the console). Off: the admin locks them by hand."""

    @field_validator("homeserver_admin_token_file")
    @classmethod
    def _resolve_admin_token_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolve(value, info)

    @model_validator(mode="after")
    def _load_admin_token(self) -> Self:
        if self.homeserver_admin_token_file is not None and self.homeserver_admin_token is None:
            token = _read_secret(self.homeserver_admin_token_file, "admin token of the homeserver")
            object.__setattr__(self, "homeserver_admin_token", token)
        return self

    @field_validator("users")
    @classmethod
    def _matrix_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for user_id in value:
            if user_id_server(user_id) is None:
                raise ValueError(f"{user_id!r} is not a Matrix user ID (like '@alice:example.org')")
        return value


class BridgeConfig(_Strict):
    """Everything the bridge needs to serve one federation's homeserver."""

    server_name: ServerName
    """The Matrix server name of the homeserver this bridge serves (the part after ':' in IDs)."""
    homeserver_url: BaseUrl
    """Where the bridge reaches that homeserver (client listener; must also serve `openid`)."""
    federation_name: str | None = Field(default=None, min_length=1, max_length=100)
    data_dir: Path = Field(default=Path("data"), validate_default=True)
    """Relative to the configuration file's folder, like every path here."""
    database_url: str | None = None
    """SQLAlchemy async URL; defaults to an SQLite file in `data_dir`."""
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(default=8780, ge=1, le=65535)
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """If set, Prometheus metrics are served on 127.0.0.1 at this port (never publicly)."""
    service_tokens: tuple[ServiceToken, ...] = ()
    bot_service_token: str | None = Field(default="bot", min_length=1, max_length=64)
    """The name of the service token (in `service_tokens`) the bot presents. Only that token
    may report the bot's pending identity resets (shown in the console); None: no caller may."""
    openid_allowed_servers: tuple[ServerName, ...] | None = None
    """Servers whose users may use the API with an OpenID token; defaults to `server_name`."""
    openid_server_urls: dict[ServerName, BaseUrl] = Field(default_factory=dict)
    """Explicit base URLs for checking other servers' OpenID tokens (else federation lookup)."""
    federation_ca_file: Path | None = None
    """Extra CA trusted when reaching other servers over federation TLS (private CAs)."""
    openid_cache_seconds: int = Field(default=60, ge=0, le=3600)
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    admin: AdminSettings = Field(default_factory=AdminSettings)
    """Onboarding and console settings; without them the console admits nobody."""
    signing_key_file: Path | None = None
    """The federation's Ed25519 signing key (signs the manifest); generated 0600 on first start.
    Default: `federation.signing.key` in `data_dir`."""
    manifest_lifetime_seconds: int = Field(default=24 * 3600, ge=60, le=30 * 24 * 3600)
    """How long a published manifest stays valid: peers refuse it afterwards (replay bound)."""
    peer_refresh_seconds: int = Field(default=20, ge=1, le=3600)
    """How often peer federations' manifests are fetched and verified."""
    psc: PscSettings | None = None
    """Pro Santé Connect sign-in (admission rule); without it the bridge admits nobody by PSC."""

    @field_validator("data_dir", "federation_ca_file", "signing_key_file")
    @classmethod
    def _resolve_paths(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolve(value, info)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        return config_file.async_database_url(value)

    @field_validator("service_tokens")
    @classmethod
    def _unique_tokens(cls, value: tuple[ServiceToken, ...]) -> tuple[ServiceToken, ...]:
        names = [t.name for t in value]
        if len(set(names)) != len(names):
            raise ValueError("service token names must be unique")
        if len({t.secret() for t in value}) != len(value):
            raise ValueError("two service tokens have the same secret")
        return value

    @property
    def effective_database_url(self) -> str:
        if self.database_url is not None:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'bridge.db'}"

    @property
    def effective_signing_key_file(self) -> Path:
        return self.signing_key_file or self.data_dir / "federation.signing.key"

    @property
    def effective_federation_name(self) -> str:
        """The name the manifest is signed under (the server name when none is configured)."""
        return self.federation_name or self.server_name

    @property
    def allowed_servers(self) -> frozenset[str]:
        """Servers whose users may query (own server unless configured otherwise)."""
        if self.openid_allowed_servers is None:
            return frozenset({self.server_name})
        return frozenset(self.openid_allowed_servers)

    def service_token_for(self, presented: str) -> ServiceToken | None:
        """The service token equal to `presented`; every token is compared, in constant time."""
        found = None
        for candidate in self.service_tokens:
            if candidate.matches(presented):
                found = candidate
        return found


# example_fields are refused, by name, while still equal to the shipped example's value.
_FILE = config_file.ConfigFile(
    BridgeConfig, "bridge", example_fields=("server_name", "homeserver_url", "federation_name")
)
example_values = _FILE.example_values
parse_config = _FILE.parse
load_config = _FILE.load
