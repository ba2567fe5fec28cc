"""What the admin handlers take and give back, shared by the CLI and the console.

Nothing here does I/O. `AdminError` carries a message meant for the admin as is, and a kind
that each transport maps to its own way of failing (CLI exit status, HTTP status).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NewType

from bridge.directory.model import RppsId
from bridge.directory.search import display_name

MatrixId = NewType("MatrixId", str)
"""A full Matrix user ID (`@local:server`)."""
Actor = NewType("Actor", str)
"""Who did something, as the audit log names them: an admin's Matrix ID or `cli:<login>`."""

ErrorKind = Literal["invalid", "not_found", "conflict", "unavailable"]


class AdminError(Exception):
    """An admin action cannot be done; `str(error)` is the message for the admin."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


AccountState = Literal["pending", "active", "locked", "deactivated"]
"""pending: created, activation link not used yet; active: password chosen; locked: left the
register (reversible); deactivated: offboarded (final)."""


@dataclass(frozen=True, slots=True)
class Practitioner:
    """The register's facts needed to open an account (public data)."""

    rpps: RppsId
    title: str
    first_name: str
    last_name: str
    profession: str

    @property
    def display_name(self) -> str:
        """How colleagues see the account, written as the directory shows the practitioner
        ("Dr Anne-Sophie MARTIN-LÉGER")."""
        return display_name(self.title, self.first_name, self.last_name)


@dataclass(frozen=True, slots=True)
class Onboarded:
    matrix_id: MatrixId
    display_name: str
    rpps: RppsId
    activation_url: str
    """One-time link where the practitioner chooses a password; never stored, never logged."""
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Offboarded:
    matrix_id: MatrixId
    rpps: RppsId | None
    rooms: int
    """Rooms the account was in; the homeserver removes it from them."""


@dataclass(frozen=True, slots=True)
class Departed:
    """An onboarded practitioner who is no longer in the register."""

    rpps: RppsId
    matrix_id: MatrixId
    name: str
    state: AccountState | Literal["unknown"]
    locked_now: bool
    problem: str | None = None
