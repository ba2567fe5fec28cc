"""The audit log: who changed what, when, on whom. Written in the same transaction as the change.

Details are a few scalar facts (an RPPS number, a homeserver, a count). What may identify a
patient or open an account never goes in: message content does not reach the bridge at all,
and `clean_detail` refuses keys that name secrets, so a careless caller fails loudly in tests
instead of writing an activation link or a password into the log.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from bridge.admin import tables

DetailValue = str | int | bool | None
Outcome = Literal["ok", "refused", "failed"]
_FORBIDDEN_KEY_PARTS = ("token", "password", "secret", "link", "url", "body", "content")
MAX_DETAIL_VALUE = 200


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    outcome: str
    detail: dict[str, DetailValue]

    def detail_text(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.detail.items() if v is not None)


def clean_detail(detail: Mapping[str, DetailValue]) -> dict[str, DetailValue]:
    """The detail to store; raises ValueError for a key that could hold a secret or content."""
    cleaned: dict[str, DetailValue] = {}
    for key, value in detail.items():
        if any(part in key.lower() for part in _FORBIDDEN_KEY_PARTS):
            raise ValueError(f"audit detail {key!r} could hold a secret or content")
        if isinstance(value, str) and len(value) > MAX_DETAIL_VALUE:
            value = value[: MAX_DETAIL_VALUE - 1] + "…"
        cleaned[key] = value
    return cleaned


async def record(
    session: AsyncSession,
    *,
    at: datetime,
    actor: str,
    action: str,
    target: str | None = None,
    outcome: Outcome = "ok",
    **detail: DetailValue,
) -> None:
    """Add one entry (the caller commits it together with the change it describes)."""
    await session.execute(
        sa.insert(tables.audit).values(
            at=at,
            actor=actor,
            action=action,
            target=target,
            outcome=outcome,
            detail=json.dumps(clean_detail(detail), ensure_ascii=False, sort_keys=True),
        )
    )


async def recent(
    session: AsyncSession, *, limit: int = 50, offset: int = 0, action: str | None = None
) -> list[AuditEntry]:
    """Newest first."""
    query = sa.select(tables.audit).order_by(tables.audit.c.id.desc()).limit(limit).offset(offset)
    if action is not None:
        query = query.where(tables.audit.c.action == action)
    rows = (await session.execute(query)).all()
    return [
        AuditEntry(
            id=row.id,
            at=row.at,
            actor=row.actor,
            action=row.action,
            target=row.target,
            outcome=row.outcome,
            detail=dict(json.loads(row.detail)),
        )
        for row in rows
    ]
