"""What onboarding needs from the practitioner directory: look up, link, unlink, who left.

Writes go through the directory's own store (bridge.directory.store), the one writer of
`directory_link`; the reads onboarding alone needs (a link by either end, linked practitioners
missing from the register) are here. Everything runs inside the caller's transaction, so that
a link and its audit entry commit together.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from bridge.admin.model import MatrixId, Practitioner
from bridge.directory import store
from bridge.directory.model import RppsId


@dataclass(frozen=True, slots=True)
class Link:
    rpps: RppsId
    matrix_id: MatrixId


async def practitioner(session: AsyncSession, rpps: str) -> Practitioner | None:
    records = await store.get_practitioner(session, rpps)
    if not records:
        return None
    first = records[0]
    return Practitioner(
        first.rpps, first.title, first.first_name, first.last_name, first.profession
    )


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


async def link(session: AsyncSession, rpps: str, matrix_id: str, *, visible: bool) -> None:
    await store.link_matrix_id(session, rpps, matrix_id, visible=visible)


async def unlink(session: AsyncSession, matrix_id: str) -> RppsId | None:
    """Remove the account's link; the practitioner it was linked to, if any."""
    rpps = await link_of_matrix_id(session, matrix_id)
    if rpps is not None:
        await store.unlink_matrix_id(session, rpps)
    return rpps


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
