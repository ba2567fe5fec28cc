"""Reading one service's YAML configuration file into its pydantic model.

The bot and the bridge each keep their own model (what is allowed, what is required); what they
share is how an operator hears about a mistake: a message naming the file, the line or the field,
never a stack trace. Relative paths in a configuration are resolved against the file's folder, so
a configuration keeps working whatever the working directory of the process that reads it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from pydantic import BaseModel, SecretStr, ValidationError, ValidationInfo

EXAMPLE_CONFIG_NAME = "example-config.yaml"
"""Each service ships its commented example under this name in its own package."""

_ModelT = TypeVar("_ModelT", bound=BaseModel)


class ConfigError(Exception):
    """The configuration cannot be used; the message is meant for the operator, as is."""


def base_url(value: str) -> str:
    """An http(s) base URL without its trailing slash, or ValueError (a pydantic validator)."""
    value = value.strip().rstrip("/")
    if not re.match(r"^https?://[^/\s?#]+(?:/[^\s?#]*)?$", value):
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value


def async_database_url(value: str | None) -> str | None:
    """Refuse a database URL whose driver is not async (the services run on asyncio)."""
    if value is not None and not re.match(r"^(sqlite\+aiosqlite|postgresql\+asyncpg)://", value):
        raise ValueError(
            "must start with sqlite+aiosqlite:// or postgresql+asyncpg:// (async drivers)"
        )
    return value


def resolve_path(path: Path, info: ValidationInfo) -> Path:
    """`path` with ~ expanded, relative to the configuration file's folder (`base_dir`)."""
    base = info.context.get("base_dir") if isinstance(info.context, dict) else None
    path = path.expanduser()
    if not path.is_absolute() and isinstance(base, Path):
        path = base / path
    return path


def read_secret_file(path: Path, what: str) -> SecretStr:
    """The content of a secret file (a token on one line), or ValueError naming `what`."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
    if not text:
        raise ValueError(f"{what}: {path} is empty")
    return SecretStr(text)


def format_validation_error(source: str, error: ValidationError) -> str:
    """Every problem pydantic found, one line each, in words an operator can act on."""
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


def example_values(package: str) -> dict[str, Any]:
    """The example configuration shipped in `package`, parsed."""
    text = resources.files(package).joinpath(EXAMPLE_CONFIG_NAME).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def validate_config(
    model: type[_ModelT],
    data: object,
    *,
    source: str,
    base_dir: Path | None,
    example: Mapping[str, Any],
    example_fields: Sequence[str],
) -> _ModelT:
    """Validate parsed YAML against `model`. Raises `ConfigError` listing every problem.

    A field among `example_fields` still equal to its value in `example` is refused first:
    copying the example unchanged must not give a service that seems to work.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level")
    left = [f for f in example_fields if f in example and data.get(f) == example[f]]
    if left:
        raise ConfigError(
            f"{source}: these fields still have the example value, edit them: " + ", ".join(left)
        )
    try:
        return model.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None


def read_config_file(path: Path, *, service: str) -> object:
    """The parsed YAML of `path`. Raises `ConfigError` naming the file (and line) at fault.

    `service` ("bot", "bridge") tells a missing file's operator whose example to start from.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file (start from {EXAMPLE_CONFIG_NAME} shipped with the {service})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}:{where}: not valid YAML: {problem}") from None


@dataclass(frozen=True, slots=True)
class ConfigFile(Generic[_ModelT]):
    """How one service reads its configuration: its model, the package shipping its example,
    and the example values it refuses to run with."""

    model: type[_ModelT]
    package: str
    """Also the service's name in messages ("bot", "bridge")."""
    example_fields: tuple[str, ...]

    def example_values(self) -> dict[str, Any]:
        """The shipped example configuration, parsed (its values are refused in real configs)."""
        return example_values(self.package)

    def parse(
        self, data: object, *, source: str = "configuration", base_dir: Path | None = None
    ) -> _ModelT:
        """Validate already-parsed YAML data. Raises `ConfigError` listing every problem."""
        return validate_config(
            self.model,
            data,
            source=source,
            base_dir=base_dir,
            example=self.example_values(),
            example_fields=self.example_fields,
        )

    def load(self, path: Path) -> _ModelT:
        """Read and validate a configuration file. Raises `ConfigError` on any problem."""
        data = read_config_file(path, service=self.package)
        return self.parse(data, source=str(path), base_dir=path.resolve().parent)
