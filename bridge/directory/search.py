"""`search_directory`: one query string in, one page of practitioners out, on SQLite or PostgreSQL.

One result per practitioner (not per activity line): inviting "result 2" must mean one person.
The city, postcode and specialty shown are those of the practitioner's activity that best fits
the query (the Lyon practice for "cardio lyon"), else of their first activity in the register.

Ranking: practitioners whose name words match exactly ("martin") come before those matching
only as a prefix ("martinez"), then name order. Practitioners are numbered in name order at
import (bridge.directory.generations), so each tier comes out of the index already sorted: a
page costs a count and an ordered scan that stops after `limit` rows, however many match.
The same plan (bridge.directory.query) is rendered for FTS5 and for tsquery, so both back ends
return the same practitioners in the same order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from bridge.directory import rows as w
from bridge.directory.model import RppsId
from bridge.directory.query import (
    Expr,
    Plan,
    phrases_to_look_up,
    plan_query,
    to_fts5,
    to_tsquery,
)

logger = logging.getLogger(__name__)

_TITLES = {"docteur": "Dr", "professeur": "Pr"}
_COLUMNS = "p.rpps, p.title, p.first_name, p.last_name, p.profession, p.activities, l.matrix_id"


@dataclass(frozen=True, slots=True)
class SearchResult:
    rpps: RppsId
    display_name: str
    profession: str
    specialty: str
    city: str
    postcode: str
    matrix_id: str | None
    """Set only when the practitioner is onboarded and chose to be visible."""


@dataclass(frozen=True, slots=True)
class SearchPage:
    total: int
    results: list[SearchResult]


class _Backend:
    """The SQL of one back end for: count matches, one ordered page of matches."""

    def __init__(self, dialect: str) -> None:
        self.postgres = dialect == "postgresql"
        if self.postgres:
            where = "p.tokens @@ CAST(:q AS tsquery)"
            self.count_sql = f"SELECT count(*) FROM directory_practitioner p WHERE {where}"
            self.page_sql = (
                f"SELECT {_COLUMNS} FROM directory_practitioner p "
                "LEFT JOIN directory_link l ON l.rpps = p.rpps AND l.visible "
                f"WHERE {where} ORDER BY p.id LIMIT :limit OFFSET :offset"
            )
        else:
            self.count_sql = "SELECT count(*) FROM directory_fts WHERE directory_fts MATCH :q"
            self.page_sql = (
                f"SELECT {_COLUMNS} FROM directory_fts f "
                "JOIN directory_practitioner p ON p.id = f.rowid "
                "LEFT JOIN directory_link l ON l.rpps = p.rpps AND l.visible "
                "WHERE directory_fts MATCH :q ORDER BY f.rowid LIMIT :limit OFFSET :offset"
            )

    def render(self, expr: Expr) -> str:
        return to_tsquery(expr) if self.postgres else to_fts5(expr)

    def but_not(self, expr: Expr, excluded: Expr) -> str:
        if self.postgres:
            return f"{to_tsquery(expr)} & !{to_tsquery(excluded)}"
        return f"{to_fts5(expr)} NOT {to_fts5(excluded)}"


_PLACES_SQL = sa.text("SELECT key FROM directory_place WHERE key IN :keys").bindparams(
    sa.bindparam("keys", expanding=True)
)


async def _known_cities(session: AsyncSession, candidates: list[str]) -> set[str]:
    if not candidates:
        return set()
    result = await session.execute(_PLACES_SQL, {"keys": candidates})
    return {row[0] for row in result}


async def search_directory(
    session: AsyncSession, query: str, *, limit: int = 10, offset: int = 0
) -> SearchPage:
    """The practitioners matching `query` (see bridge.directory.query), one page of them."""
    if limit <= 0 or offset < 0:
        raise ValueError("limit must be positive and offset not negative")
    cities = await _known_cities(session, phrases_to_look_up(query))
    plan = plan_query(query, cities)
    if plan.empty:
        return SearchPage(0, [])
    backend = _Backend(session.get_bind().dialect.name)
    expr = plan.expression()
    q = backend.render(expr)
    total = int(await session.scalar(sa.text(backend.count_sql), {"q": q}) or 0)
    if total == 0 or offset >= total:
        return SearchPage(total, [])
    rows: list[Any] = []
    if plan.ranks_exact:
        exact = plan.expression(exact=True)
        exact_q = backend.render(exact)
        n_exact = int(await session.scalar(sa.text(backend.count_sql), {"q": exact_q}) or 0)
        if offset < n_exact:
            rows += await _page(session, backend, exact_q, limit, offset)
        if len(rows) < limit and n_exact < total:
            rest = backend.but_not(expr, exact)
            rows += await _page(session, backend, rest, limit - len(rows), max(0, offset - n_exact))
    else:
        rows = await _page(session, backend, q, limit, offset)
    return SearchPage(total, [_result(row, plan) for row in rows])


async def _page(
    session: AsyncSession, backend: _Backend, q: str, limit: int, offset: int
) -> list[Any]:
    result = await session.execute(
        sa.text(backend.page_sql), {"q": q, "limit": limit, "offset": offset}
    )
    return list(result)


def _score(activity: w.Activity, plan: Plan) -> int:
    """How many of the query's place/specialty wishes this activity fulfils."""
    score = 0
    if plan.specialties and activity.specialty_code in plan.specialties:
        score += 1
    if plan.postcodes and activity.postcode in plan.postcodes:
        score += 1
    if plan.departments and activity.department_code in plan.departments:
        score += 1
    if plan.cities and w.city_key(activity.city) in plan.cities:
        score += 1
    return score


def display_name(title: str, first_name: str, last_name: str) -> str:
    """ "Dr Anne-Sophie MARTIN-LÉGER": title abbreviated, first name capitalised, last as is."""
    short = _TITLES.get(title.strip().lower(), "")
    first = first_name.strip().title()
    return " ".join(part for part in (short, first, last_name.strip()) if part)


def _result(row: Any, plan: Plan) -> SearchResult:
    activities = w.decode_activities(row.activities)
    best = max(activities, key=lambda a: _score(a, plan), default=None)
    return SearchResult(
        rpps=RppsId(row.rpps),
        display_name=display_name(row.title, row.first_name, row.last_name),
        profession=row.profession,
        specialty=best.specialty if best else "",
        city=best.city if best else "",
        postcode=best.postcode if best else "",
        matrix_id=row.matrix_id,
    )
