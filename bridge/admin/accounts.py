"""Account bookkeeping in the bridge database: state of each account, activation links.

Called inside the handlers' transactions; no homeserver calls here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from bridge.admin import tables
from bridge.admin.model import AccountState, MatrixId


def secret_hash(secret: str) -> str:
    """What the database keeps of a link or session secret: enough to recognise, not to use."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AccountRow:
    matrix_id: MatrixId
    rpps: str | None
    server_name: str
    state: AccountState
    created_at: datetime
    updated_at: datetime


async def get(session: AsyncSession, matrix_id: str) -> AccountRow | None:
    row = (
        await session.execute(
            sa.select(tables.account).where(tables.account.c.matrix_id == matrix_id)
        )
    ).first()
    return None if row is None else AccountRow(*row)


async def set_state(
    session: AsyncSession,
    matrix_id: str,
    *,
    state: AccountState,
    at: datetime,
    server_name: str,
    rpps: str | None = None,
) -> None:
    """Record where an account stands (creating its row for accounts made elsewhere)."""
    table = tables.account
    existing = await get(session, matrix_id)
    if existing is None:
        await session.execute(
            sa.insert(table).values(
                matrix_id=matrix_id,
                rpps=rpps,
                server_name=server_name,
                state=state,
                created_at=at,
                updated_at=at,
            )
        )
        return
    values: dict[str, object] = {"state": state, "updated_at": at}
    if rpps is not None:
        values["rpps"] = rpps
    await session.execute(sa.update(table).where(table.c.matrix_id == matrix_id).values(values))


async def list_accounts(session: AsyncSession, *, limit: int = 200) -> list[AccountRow]:
    rows = (
        await session.execute(
            sa.select(tables.account).order_by(tables.account.c.updated_at.desc()).limit(limit)
        )
    ).all()
    return [AccountRow(*row) for row in rows]


async def add_activation(
    session: AsyncSession, matrix_id: str, secret: str, *, at: datetime, expires_at: datetime
) -> None:
    await session.execute(
        sa.insert(tables.activation).values(
            token_hash=secret_hash(secret),
            matrix_id=matrix_id,
            created_at=at,
            expires_at=expires_at,
            used_at=None,
        )
    )


async def find_activation(
    session: AsyncSession, secret: str
) -> tuple[MatrixId, datetime, datetime | None] | None:
    """(account, expiry, used at) of a link, None if the link was never issued."""
    row = (
        await session.execute(
            sa.select(
                tables.activation.c.matrix_id,
                tables.activation.c.expires_at,
                tables.activation.c.used_at,
            ).where(tables.activation.c.token_hash == secret_hash(secret))
        )
    ).first()
    return None if row is None else (MatrixId(row[0]), row[1], row[2])


async def use_activation(session: AsyncSession, secret: str, *, at: datetime) -> bool:
    """Mark a link used; False if it was already (the row stays locked until commit)."""
    table = tables.activation
    result = await session.execute(
        sa.update(table)
        .where(table.c.token_hash == secret_hash(secret), table.c.used_at.is_(None))
        .values(used_at=at)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def revoke_activations(session: AsyncSession, matrix_id: str) -> None:
    await session.execute(
        sa.delete(tables.activation).where(tables.activation.c.matrix_id == matrix_id)
    )
