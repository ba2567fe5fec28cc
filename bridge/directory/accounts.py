"""Who a Matrix account is in the register: the practitioner its onboarding linked it to.

The bot needs this to name a case's members in an export by RPPS. It must never go through a
display name, which any account sets freely (a doctor could take a colleague's name): the
link in `directory_link`, written at onboarding, is the only source. Only visible links are
answered, the rule searches follow, so this reveals nothing a search would not.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from bridge.directory.query import plan_query
from bridge.directory.search import SearchResult, _result
from bridge.directory.search_sql import COLUMNS

_BY_MATRIX_ID = sa.text(
    f"SELECT {COLUMNS} FROM directory_link l "
    "JOIN directory_practitioner p ON p.rpps = l.rpps "
    "WHERE l.visible AND l.matrix_id IN :ids"
).bindparams(sa.bindparam("ids", expanding=True))


async def practitioners_by_matrix_id(
    session: AsyncSession, matrix_ids: Sequence[str]
) -> list[SearchResult]:
    """The register's entries linked (visibly) to these Matrix IDs; unknown IDs are left out."""
    if not matrix_ids:
        return []
    rows = (await session.execute(_BY_MATRIX_ID, {"ids": list(dict.fromkeys(matrix_ids))})).all()
    plan = plan_query("", frozenset())  # no wishes: each one's first activity is shown
    return [_result(tuple(row), plan) for row in rows]
