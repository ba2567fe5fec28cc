"""Console sessions: a random cookie, its hash in the database, a CSRF token derived from it.

The cookie value is 32 random bytes; the database keeps only its SHA-256, so a copy of the
database does not let anyone in. The CSRF token put in every form is an HMAC of the cookie
value: it needs no storage, changes with each sign-in, and cannot be computed without the
cookie, which scripts of other sites cannot read (HttpOnly) nor send (SameSite=Strict).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from bridge.admin import tables
from bridge.admin.accounts import secret_hash
from bridge.admin.services import aware

COOKIE = "caducee_console"
LOGIN_COOKIE = "caducee_console_login"
"""Holds the login form's CSRF value until sign-in (double submit: no session exists yet)."""
COOKIE_PATH = "/admin"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def csrf_token(session_secret: str) -> str:
    return hmac.new(session_secret.encode(), b"caducee console csrf", hashlib.sha256).hexdigest()


def csrf_ok(session_secret: str, presented: str) -> bool:
    return hmac.compare_digest(csrf_token(session_secret), presented)


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    user_id: str
    expires_at: datetime


async def open_session(
    session: AsyncSession, user_id: str, *, now: datetime, lifetime: timedelta
) -> str:
    """A new session for `user_id`; returns the cookie value (never stored)."""
    secret = new_secret()
    await session.execute(
        sa.insert(tables.console_session).values(
            id_hash=secret_hash(secret), user_id=user_id, created_at=now, expires_at=now + lifetime
        )
    )
    await session.execute(
        sa.delete(tables.console_session).where(tables.console_session.c.expires_at < now)
    )
    return secret


async def find_session(
    session: AsyncSession, secret: str, *, now: datetime
) -> ConsoleSession | None:
    table = tables.console_session
    row = (
        await session.execute(
            sa.select(table.c.user_id, table.c.expires_at).where(
                table.c.id_hash == secret_hash(secret)
            )
        )
    ).first()
    if row is None or aware(row.expires_at) <= now:
        return None
    return ConsoleSession(row.user_id, aware(row.expires_at))


async def close_session(session: AsyncSession, secret: str) -> None:
    await session.execute(
        sa.delete(tables.console_session).where(
            tables.console_session.c.id_hash == secret_hash(secret)
        )
    )
