"""The bot's configuration: one YAML file, validated once at start (``BotConfig``).

Operators copy `example-config.yaml` (shipped in this package). A typo in a field, a bound out
of order, or a value left at its example stops the bot before it logs in, with a message naming
the file and the field. Relative paths are resolved against the configuration file's folder.
Secrets come inline or from files; the pickle key file is generated (0600) when named but
absent, because a real secret must protect the crypto store and nobody should have to invent one.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bot.crypto.keyfiles import read_or_create_secret
from bot.durations import DurationError, parse_duration
from bot.ids import USER_ID_RE, server_of
from bridge.common import config_file
from bridge.common.config_file import EXAMPLE_CONFIG_NAME as EXAMPLE_CONFIG_NAME
from bridge.common.config_file import ConfigError as ConfigError
from bridge.common.config_file import base_url as _base_url
from bridge.common.config_file import read_secret_file as _read_secret_file
from bridge.common.config_file import resolve_path as _resolve

_PLACEHOLDER_MARK = "CHANGE_ME"
_USER_ID_RE = USER_ID_RE
MIN_PICKLE_KEY_LENGTH = 16
MAX_REGISTRY_REFRESH = 3600


class TrustMode(StrEnum):
    """Which devices of other people receive the bot's room keys.

    ``tofu-cross-signed``: only devices cross-signed by their owner, whose master key is pinned
    on first sight (a change stops trust until the doctor confirms it from an earlier session
    with ``!identity confirm`` or an operator runs ``caducee bot accept-identity``; see
    `bot.identity`).
    ``all``: every device (nio's ``ignore_unverified_devices``), for homeservers whose clients
    cannot cross-sign.
    """

    TOFU_CROSS_SIGNED = "tofu-cross-signed"
    ALL = "all"


def _duration(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a duration like 7d")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("a duration must be positive")
        return value
    try:
        return parse_duration(str(value))
    except DurationError as exc:
        raise ValueError(str(exc)) from None


BaseUrl = Annotated[str, AfterValidator(_base_url)]
Seconds = Annotated[int, BeforeValidator(_duration)]


class BotConfig(BaseModel):
    """Everything one bot (one per homeserver) needs."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    homeserver_url: BaseUrl
    user_id: str
    password: SecretStr | None = None
    password_file: Path | None = None
    device_name: str = Field(default="Caducée", min_length=1, max_length=100)
    store_dir: Path
    pickle_key: SecretStr | None = None
    pickle_key_file: Path | None = None
    database_url: str | None = None
    bridge_url: BaseUrl | None = None
    bridge_token: SecretStr | None = None
    bridge_token_file: Path | None = None
    member_servers: tuple[str, ...] = Field(min_length=1)
    follow_registry: bool = False
    """Take the member servers from the federation registry, through the bridge at `bridge_url`
    (the list the homeservers' guards follow); `member_servers` is the list in force until the
    bridge first answers."""
    registry_refresh_interval: Seconds = 30
    """How often the bridge is asked for that list (with follow_registry)."""
    default_ttl: Seconds = 7 * 86400
    min_ttl: Seconds = 60
    max_ttl: Seconds = 365 * 86400
    trust: TrustMode = TrustMode.TOFU_CROSS_SIGNED
    replace_foreign_identity: bool = True
    """If the server holds a cross-signing identity for the bot that is not in store_dir,
    publish ours (True) or refuse to start (False)."""
    admin_token_file: Path | None = None
    """A homeserver admin access token (file, 0600): lifts the bot's rate limit, purges
    closed cases and expired media. Without it expiry still redacts on time."""
    delete_expired_media: bool = False
    """Also delete the encrypted files of expired messages from the homeserver's media store
    (needs admin_token_file)."""
    unreadable_notice_interval: Seconds = 300
    """At most one "I could not read your message" notice per sender and room this often."""
    undecryptable_grace_seconds: float = Field(default=5.0, ge=0, le=300)
    """How long a message may wait for its key (keys can arrive after the message)."""
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")

    @field_validator("user_id")
    @classmethod
    def _user_id(cls, value: str) -> str:
        if not _USER_ID_RE.match(value):
            raise ValueError(f"{value!r} is not a Matrix user id like @caducee:example.org")
        return value

    @field_validator(
        "password_file", "store_dir", "pickle_key_file", "bridge_token_file", "admin_token_file"
    )
    @classmethod
    def _paths(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolve(value, info)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        return config_file.async_database_url(value)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        if self.password_file is not None:
            object.__setattr__(
                self, "password", _read_secret_file(self.password_file, "password_file")
            )
        if self.password is None:
            raise ValueError(
                "password or password_file is required (login, and replacing the bot's "
                "cross-signing keys, need it)"
            )
        if (self.pickle_key is None) == (self.pickle_key_file is None):
            raise ValueError("give exactly one of pickle_key, pickle_key_file")
        if self.pickle_key is not None:
            key = self.pickle_key.get_secret_value()
            if len(key) < MIN_PICKLE_KEY_LENGTH:
                raise ValueError(
                    f"pickle_key is too short (at least {MIN_PICKLE_KEY_LENGTH} characters); "
                    "better, use pickle_key_file and let the bot generate it"
                )
        if self.bridge_token is not None and self.bridge_token_file is not None:
            raise ValueError("give bridge_token or bridge_token_file, not both")
        if self.bridge_token_file is not None:
            object.__setattr__(
                self,
                "bridge_token",
                _read_secret_file(self.bridge_token_file, "bridge_token_file"),
            )
        if self.bridge_url is not None and self.bridge_token is None:
            raise ValueError("bridge_url needs bridge_token or bridge_token_file")
        if self.follow_registry and self.bridge_url is None:
            raise ValueError("follow_registry needs bridge_url (the bridge serves the registry)")
        if self.registry_refresh_interval > MAX_REGISTRY_REFRESH:
            raise ValueError("registry_refresh_interval must be at most 1h")
        if self.delete_expired_media and self.admin_token_file is None:
            raise ValueError("delete_expired_media needs admin_token_file")
        if not 0 < self.min_ttl <= self.default_ttl <= self.max_ttl:
            raise ValueError("message lifetimes must satisfy min_ttl <= default_ttl <= max_ttl")
        for name in ("password", "pickle_key", "bridge_token"):
            secret = getattr(self, name)
            if secret is not None and _PLACEHOLDER_MARK in secret.get_secret_value():
                raise ValueError(f"{name} still has its example value")
        return self

    @property
    def server_name(self) -> str:
        return server_of(self.user_id)

    @property
    def effective_member_servers(self) -> frozenset[str]:
        """The configured member servers, always including the bot's own (with
        follow_registry, only until the bridge answers: see `bot.members`)."""
        return frozenset(self.member_servers) | {self.server_name}

    @property
    def effective_database_url(self) -> str:
        if self.database_url is not None:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.store_dir / 'bot.db'}"

    def password_value(self) -> str:
        assert self.password is not None  # guaranteed by the validator
        return self.password.get_secret_value()

    def bridge_token_value(self) -> str | None:
        return None if self.bridge_token is None else self.bridge_token.get_secret_value()

    def resolve_pickle_key(self) -> str:
        """The crypto store's pickle key; generates the key file (0600) if named but absent."""
        if self.pickle_key is not None:
            return self.pickle_key.get_secret_value()
        assert self.pickle_key_file is not None
        return read_or_create_secret(self.pickle_key_file)


# example_fields are refused, by name, while still equal to the shipped example's value.
_FILE = config_file.ConfigFile(
    BotConfig,
    "bot",
    example_fields=("homeserver_url", "user_id", "password", "pickle_key", "bridge_token"),
)
example_values = _FILE.example_values
parse_config = _FILE.parse
load_config = _FILE.load
