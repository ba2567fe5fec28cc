"""The bot's configuration: one YAML file, validated once at start (``BotConfig``).

Operators copy `example-config.yaml` (shipped in this package). A typo in a field, a bound out
of order, or a value left at its example stops the bot before it logs in, with a message naming
the file and the field. Relative paths are resolved against the configuration file's folder.
Secrets come inline or from files; the pickle key file is generated (0600) when named but
absent, because a real secret must protect the crypto store and nobody should have to invent one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Self

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bot.crypto.keyfiles import read_or_create_secret
from bot.durations import DurationError, parse_duration
from bot.ids import server_of

EXAMPLE_CONFIG_NAME = "example-config.yaml"
_PLACEHOLDER_MARK = "CHANGE_ME"
_USER_ID_RE = re.compile(r"^@[a-z0-9._=/+-]+:[A-Za-z0-9.-]+(?::[0-9]{1,5})?$")
MIN_PICKLE_KEY_LENGTH = 16


class ConfigError(Exception):
    """The configuration cannot be used; the message is meant for the operator, as is."""


class TrustMode(StrEnum):
    """Which devices of other people receive the bot's room keys.

    ``tofu-cross-signed``: only devices cross-signed by their owner, whose master key is pinned
    on first sight (a change stops trust until an operator runs ``caducee bot forget-identity``).
    ``all``: every device (nio's ``ignore_unverified_devices``), for homeservers whose clients
    cannot cross-sign.
    """

    TOFU_CROSS_SIGNED = "tofu-cross-signed"
    ALL = "all"


def _base_url(value: str) -> str:
    value = value.strip().rstrip("/")
    if not re.match(r"^https?://[^/\s?#]+(?:/[^\s?#]*)?$", value):
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value


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


def _resolve(path: Path, info: ValidationInfo) -> Path:
    base = info.context.get("base_dir") if isinstance(info.context, dict) else None
    path = path.expanduser()
    if not path.is_absolute() and isinstance(base, Path):
        path = base / path
    return path


def _read_secret_file(path: Path, what: str) -> SecretStr:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
    if not text:
        raise ValueError(f"{what}: {path} is empty")
    return SecretStr(text)


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
        if value is not None and not re.match(
            r"^(sqlite\+aiosqlite|postgresql\+asyncpg)://", value
        ):
            raise ValueError(
                "must start with sqlite+aiosqlite:// or postgresql+asyncpg:// (async drivers)"
            )
        return value

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
        """Member servers, always including the bot's own."""
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


def _format_validation_error(source: str, error: ValidationError) -> str:
    lines = [f"{source}: invalid configuration:"]
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field (typo?)"
        elif item["type"] == "missing":
            message = "required field missing"
        lines.append(f"  {where}: {message.removeprefix('Value error, ')}")
    return "\n".join(lines)


def example_values() -> dict[str, Any]:
    """The shipped example configuration, parsed (its values are refused in real configs)."""
    text = resources.files("bot").joinpath(EXAMPLE_CONFIG_NAME).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


_EXAMPLE_CHECKED_FIELDS = ("homeserver_url", "user_id", "password", "pickle_key", "bridge_token")


def parse_config(
    data: object, *, source: str = "configuration", base_dir: Path | None = None
) -> BotConfig:
    """Validate already-parsed YAML data. Raises `ConfigError` listing every problem."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level")
    example = example_values()
    left = [f for f in _EXAMPLE_CHECKED_FIELDS if f in example and data.get(f) == example[f]]
    if left:
        raise ConfigError(
            f"{source}: these fields still have the example value, edit them: " + ", ".join(left)
        )
    try:
        return BotConfig.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(source, exc)) from None


def load_config(path: Path) -> BotConfig:
    """Read and validate a configuration file. Raises `ConfigError` on any problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file (start from {EXAMPLE_CONFIG_NAME} shipped with the bot)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(
            f"{path}:{where}: not valid YAML: {getattr(exc, 'problem', exc)}"
        ) from None
    return parse_config(data, source=str(path), base_dir=path.resolve().parent)
