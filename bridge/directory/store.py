"""The directory's small reads and writes outside imports: links to Matrix IDs, lookups, history.

Every function runs in the caller's session and transaction (nothing commits here), so that a
link and, say, its audit entry commit together. Links live in `directory_link`, apart from the
imported practitioners: a re-import never loses them, and a link whose practitioner disappeared
from the register is how struck-off practitioners' accounts are found.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from bridge.directory.model import PractitionerRecord, RppsId
from bridge.directory.rows import to_records

ChangeKind = Literal["new", "changed", "disappeared"]


@dataclass(frozen=True, slots=True)
class ImportSummary:
    import_id: int
    source: str
    format: str
    finished_at: str
    practitioners: int
    new: int
    changed: int
    disappeared: int
    errors: int
    warnings: int
    initial: bool


@dataclass(frozen=True, slots=True)
class Change:
    rpps: RppsId
    kind: ChangeKind
    last_name: str
    first_name: str


async def link_matrix_id(
    session: AsyncSession, rpps: str, matrix_id: str, *, visible: bool
) -> None:
    """Record that `matrix_id` is the account of practitioner `rpps` (replacing any link).

    `visible` says whether searches show the Matrix ID (practitioners may hide it).
    """
    await session.execute(
        sa.text(
            "INSERT INTO directory_link (rpps, matrix_id, visible, linked_at) "
            "VALUES (:rpps, :matrix_id, :visible, :at) "
            "ON CONFLICT (rpps) DO UPDATE SET matrix_id = excluded.matrix_id, "
            "visible = excluded.visible, linked_at = excluded.linked_at"
        ),
        {"rpps": rpps, "matrix_id": matrix_id, "visible": visible, "at": datetime.now(UTC)},
    )


async def unlink_matrix_id(session: AsyncSession, rpps: str) -> bool:
    """Forget the practitioner's account; whether there was one."""
    result = await session.execute(
        sa.text("DELETE FROM directory_link WHERE rpps = :rpps"), {"rpps": rpps}
    )
    return bool(getattr(result, "rowcount", 0))


async def set_visibility(session: AsyncSession, rpps: str, *, visible: bool) -> bool:
    """Show or hide the practitioner's Matrix ID in searches; whether they are linked."""
    result = await session.execute(
        sa.text("UPDATE directory_link SET visible = :visible WHERE rpps = :rpps"),
        {"rpps": rpps, "visible": visible},
    )
    return bool(getattr(result, "rowcount", 0))


async def get_practitioner(session: AsyncSession, rpps: str) -> list[PractitionerRecord]:
    """The practitioner's activities as the register lists them; empty if unknown."""
    row = (
        await session.execute(
            sa.text(
                "SELECT rpps, id_type, last_name, first_name, title, profession_code, "
                "profession, activities FROM directory_practitioner WHERE rpps = :rpps"
            ),
            {"rpps": rpps},
        )
    ).first()
    return [] if row is None else list(to_records(*row))


async def last_import(session: AsyncSession) -> ImportSummary | None:
    """The import whose practitioners are being searched now."""
    row = (
        await session.execute(
            sa.text(
                "SELECT id, source, format, finished_at, practitioners, new_count, "
                "changed_count, disappeared_count, errors, warnings, initial "
                "FROM directory_import ORDER BY id DESC LIMIT 1"
            )
        )
    ).first()
    if row is None:
        return None
    return ImportSummary(
        import_id=int(row[0]),
        source=row[1],
        format=row[2],
        finished_at=str(row[3]),
        practitioners=int(row[4]),
        new=int(row[5]),
        changed=int(row[6]),
        disappeared=int(row[7]),
        errors=int(row[8]),
        warnings=int(row[9]),
        initial=bool(row[10]),
    )


async def changes(
    session: AsyncSession, import_id: int, kind: ChangeKind, *, limit: int = 1000
) -> list[Change]:
    """Who appeared, changed or disappeared at that import (the initial import lists no one
    as new: everyone is)."""
    result = await session.execute(
        sa.text(
            "SELECT rpps, kind, last_name, first_name FROM directory_change "
            "WHERE import_id = :id AND kind = :kind ORDER BY last_name, first_name, rpps "
            "LIMIT :limit"
        ),
        {"id": import_id, "kind": kind, "limit": limit},
    )
    return [Change(RppsId(r[0]), r[1], r[2], r[3]) for r in result]
