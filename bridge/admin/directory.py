"""What onboarding needs from the practitioner directory: look up, link, unlink, who left.

The directory's tables (migration 0001) are read and written here with plain SQL, one
statement per need, always inside the caller's transaction so that a link and its audit entry
commit together. `directory_link` is the one place that says which account is whose.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from bridge.admin.model import MatrixId, Practitioner
from bridge.directory.model import RppsId


@dataclass(frozen=True, slots=True)
class Link:
    rpps: RppsId
    matrix_id: MatrixId


async def practitioner(session: AsyncSession, rpps: str) -> Practitioner | None:
    row = (
        await session.execute(
            sa.text(
                "SELECT rpps, title, first_name, last_name, profession "
                "FROM directory_practitioner WHERE rpps = :rpps"
            ),
            {"rpps": rpps},
        )
    ).first()
    if row is None:
        return None
    return Practitioner(RppsId(row.rpps), row.title, row.first_name, row.last_name, row.profession)


async def link_of_rpps(session: AsyncSession, rpps: str) -> MatrixId | None:
    value = await session.scalar(
        sa.text("SELECT matrix_id FROM directory_link WHERE rpps = :rpps"), {"rpps": rpps}
    )
    return None if value is None else MatrixId(value)


async def link_of_matrix_id(session: AsyncSession, matrix_id: str) -> RppsId | None:
    value = await session.scalar(
        sa.text("SELECT rpps FROM directory_link WHERE matrix_id = :m"), {"m": matrix_id}
    )
    return None if value is None else RppsId(value)


async def link(
    session: AsyncSession, rpps: str, matrix_id: str, *, visible: bool, at: datetime
) -> None:
    await session.execute(
        sa.text(
            "INSERT INTO directory_link (rpps, matrix_id, visible, linked_at) "
            "VALUES (:rpps, :m, :visible, :at)"
        ),
        {"rpps": rpps, "m": matrix_id, "visible": visible, "at": at},
    )


async def unlink(session: AsyncSession, matrix_id: str) -> None:
    await session.execute(
        sa.text("DELETE FROM directory_link WHERE matrix_id = :m"), {"m": matrix_id}
    )


async def departed_links(session: AsyncSession) -> list[tuple[Link, str]]:
    """Linked practitioners the current register no longer lists, with their last known name
    (from the re-import's change report), oldest link first."""
    rows = (
        await session.execute(
            sa.text(
                "SELECT l.rpps, l.matrix_id, "
                "(SELECT c.first_name || ' ' || c.last_name FROM directory_change c "
                " WHERE c.rpps = l.rpps AND c.kind = 'disappeared' "
                " ORDER BY c.import_id DESC LIMIT 1) AS name "
                "FROM directory_link l WHERE NOT EXISTS "
                "(SELECT 1 FROM directory_practitioner p WHERE p.rpps = l.rpps) "
                "ORDER BY l.linked_at, l.rpps"
            )
        )
    ).all()
    return [(Link(RppsId(r.rpps), MatrixId(r.matrix_id)), r.name or "") for r in rows]
