"""`search_directory`: one query string in, one page of practitioners out, on SQLite or PostgreSQL.

One result per practitioner (not per activity line): inviting "result 2" must mean one person.
The city, postcode and specialty shown are those of the practitioner's activity that best fits
the query (the Lyon practice for "cardio lyon"), else of their first activity in the register.

Ranking: practitioners whose surname is a word typed come first, then those whose surname
begins with one, then those whose name words match whole ("martin" before "martinez"), each
tier in name order. Practitioners are numbered in name order at import
(bridge.directory.generations), so matches come out of the index already sorted. A page costs
one evaluation of the query, for its first matches up to the count's cap (the count), and a
read of the page's rows by identifier: below the cap the matches are ranked from their own
index words; past it each tier is an ordered scan that stops once the page is full, however
many match. The same plan (bridge.directory.query) is rendered for FTS5 and for tsquery, so
both back ends return the same practitioners in the same order.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bridge.directory import rows as w
from bridge.directory.model import RppsId
from bridge.directory.query import (
    Plan,
    long_prefixes,
    matcher,
    plan_query,
    typo_keys,
)
from bridge.directory.search_sql import (
    LONGEST_PREFIX,
    MAX_EXPANSION,
    Backend,
    Expansions,
    Statement,
)

logger = logging.getLogger(__name__)

_TITLES = {"docteur": "Dr", "professeur": "Pr"}


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
    more: bool = False
    """`total` is a floor: more than COUNT_CAP practitioners match (shown as "500+"); pages
    stop there (a broader query is refined, not paged through)."""


class _Places:
    """The register's city names, kept in memory per database and reloaded after an import.

    Which query words are cities decides the plan, and asking the database first would add a
    round trip to every search. Instead the plan uses this copy, and the count statement
    returns the current import's id: when it differs (an import swapped in new practitioners
    meanwhile), the copy is reloaded and the search planned again.
    """

    def __init__(self) -> None:
        self.generation: int | None = -1
        self.keys: frozenset[str] = frozenset()

    async def reload(self, backend: Backend, driver: Any) -> None:
        [(generation,)] = await backend.generation.fetch(driver, {})
        self.keys = frozenset(row[0] for row in await backend.places.fetch(driver, {}))
        self.generation = generation


COUNT_CAP = 500
"""Matches are counted up to this many; past it a page says "500+"."""
WORDS_RANKED = COUNT_CAP
"""Up to this many matches, they are ranked from their own words (`rank_by_words`), else tier
by tier in the index (`_tier_by_tier`)."""
_BACKENDS = {name: Backend(name) for name in ("sqlite", "postgresql")}
_PLACES: dict[str, _Places] = {}


async def _driver(session: AsyncSession) -> Any:
    """The DB-API driver's own connection under the session (aiosqlite or asyncpg)."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection


async def search_directory(
    session: AsyncSession, query: str, *, limit: int = 10, offset: int = 0
) -> SearchPage:
    """The practitioners matching `query` (see bridge.directory.query), one page of them."""
    if limit <= 0 or offset < 0:
        raise ValueError("limit must be positive and offset not negative")
    bind = session.get_bind()
    backend = _BACKENDS[bind.dialect.name]
    places = _PLACES.setdefault(bind.engine.url.render_as_string(), _Places())
    driver = await _driver(session)
    if places.generation == -1:
        await places.reload(backend, driver)
    for _attempt in range(3):
        steps = _steps(backend, query, places.keys, limit, offset)
        if backend.postgres:
            page, generation = await _run_async(steps, driver)
        else:
            # The whole search in one trip to aiosqlite's thread (`_execute` is how its own
            # methods queue work there): each trip costs two thread switches, which are most
            # of a small query's time.
            page, generation = await driver._execute(_run_sync, steps, driver)
        if generation == places.generation or generation is None:
            return page
        await places.reload(backend, driver)  # an import happened: new city names
    return page


Steps = Generator[tuple[Statement, dict[str, Any]], list[Any], tuple[SearchPage, int | None]]


def _run_sync(steps: Steps, driver: Any) -> tuple[SearchPage, int | None]:
    """Drive the steps on the sqlite3 connection, from aiosqlite's thread."""
    connection = driver._conn
    try:
        statement, params = next(steps)
        while True:
            rows = connection.execute(statement.sql, params).fetchall()
            statement, params = steps.send(rows)
    except StopIteration as done:
        result: tuple[SearchPage, int | None] = done.value
        return result


async def _run_async(steps: Steps, driver: Any) -> tuple[SearchPage, int | None]:
    try:
        statement, params = next(steps)
        while True:
            statement, params = steps.send(await statement.fetch(driver, params))
    except StopIteration as done:
        result: tuple[SearchPage, int | None] = done.value
        return result


def _steps(backend: Backend, query: str, cities: frozenset[str], limit: int, offset: int) -> Steps:
    """The search as statements to run (sans I/O): yields (statement, parameters), gets rows."""
    plan = plan_query(query, cities)
    if plan.empty or len(plan.identifiers) > 1:  # nobody has two numbers
        return SearchPage(0, []), None
    if plan.identifiers:
        [rpps] = plan.identifiers
        if plan.groups:
            q = backend.render(plan.expression())
            rows = yield backend.by_id_and_words, {"rpps": rpps, "q0": q}
        else:
            rows = yield backend.by_id, {"rpps": rpps}
        generation = rows[0][-1] if rows else None
        shown = [_result(row[:-1], plan) for row in rows][offset : offset + limit]
        return SearchPage(len(rows), shown), generation
    expansions: dict[str, list[str]] = {}
    words = [] if backend.postgres else long_prefixes(plan.expression(), LONGEST_PREFIX)
    if words:
        params: dict[str, Any] = {f"p{n}": word for n, word in enumerate(words)}
        params |= {f"e{n}": word + "{" for n, word in enumerate(words)}  # "{" follows "z"
        params |= {f"h{n}": len(word) for n, word in enumerate(words)}
        found: dict[int, list[str]] = {}
        for n, term in (yield backend.vocabulary(len(words)), params):
            found.setdefault(int(n), []).append(str(term))
        for n, word in enumerate(words):
            if 0 < len(found.get(n, ())) <= MAX_EXPANSION:
                expansions[word] = found[n]
    page = yield from _ranked(backend, plan, limit, offset, expansions)
    typed = plan.typo_words() if page[0].total == 0 else []
    if typed:
        # Nothing as typed: one letter off in a long name word (below any exact match,
        # since those come first by construction: there are none).
        keys = {word: typo_keys(word) for word in typed}
        variants = list(dict.fromkeys(k for found_keys in keys.values() for k in found_keys))
        rows = yield (
            backend.typo_lookup(len(variants)),
            {f"v{n}": v for n, v in enumerate(variants)},
        )
        corrections: dict[str, list[str]] = {}
        for variant, surname in rows:
            for word, word_keys in keys.items():
                if variant in word_keys:
                    corrections.setdefault(word, []).append(str(surname))
        typos = plan.with_typos(corrections)
        assert typos is not None
        typos.name_words.clear()  # name order: the ranking tiers compare the words typed
        page = yield from _ranked(backend, typos, limit, offset, expansions, gathered=True)
    return page


def _ranked(
    backend: Backend,
    plan: Plan,
    limit: int,
    offset: int,
    expansions: Expansions,
    *,
    gathered: bool = False,
) -> Steps:
    """One page of the plan's matches, ranked by `Plan.tiers`, each tier in name order.

    The expression is evaluated once, for the first matches up to the count's cap: they are
    the count and, when there are fewer, all the matches, ranked from their own index words
    (`rank_by_words`) and read by identifier for the page. Past the cap, each tier is read
    from the index as far as the page needs (`_tier_by_tier`).

    `gathered`: the matches sit in one stretch of the name order (the surnames a typo was
    corrected to), which PostgreSQL must sort rather than walk to (see `page_tiers`)."""
    q = backend.render(plan.expression(), expansions)
    params = {"q0": q, "cap": COUNT_CAP + 1}
    generation: int | None
    if backend.postgres:
        # With their words: a second evaluation costs more than carrying them.
        rows = yield backend.match_words, params
        generation = rows[0][-1] if rows else None
        found: list[tuple[int, str]] = [(row[0], row[1]) for row in rows]
    else:
        [(generation, text)] = yield backend.match_ids, params
        found = [(row_id, "") for row_id in _ids(text)]
    if not found:
        if generation is None:
            [(generation,)] = yield backend.generation, {}
        return SearchPage(0, []), generation
    more = len(found) > COUNT_CAP  # then `found` is not all of them
    if more or len(found) > WORDS_RANKED:
        total = min(len(found), COUNT_CAP)
        tiered = yield from _tier_by_tier(
            backend, plan, limit, offset, expansions, total, more=more, gathered=gathered
        )
        return tiered, generation
    if not plan.ranks_exact:
        ranked = sorted(row_id for row_id, _ in found)
    else:
        if not backend.postgres:
            ids = backend.id_list([row_id for row_id, _ in found])
            found = yield backend.words_by_ids, {"ids": ids}
        ranked = rank_by_words(plan, found)
    results = yield from _read(backend, plan, ranked[offset : offset + limit])
    return SearchPage(len(found), results), generation


def _tier_by_tier(
    backend: Backend,
    plan: Plan,
    limit: int,
    offset: int,
    expansions: Expansions,
    total: int,
    *,
    more: bool,
    gathered: bool,
) -> Generator[tuple[Statement, dict[str, Any]], list[Any], SearchPage]:
    """A page of `total` matches (`more`: past the count's cap, shown as "500+"), each
    ranking tier read from the index only as far as the page needs: "martin" fills a first
    page from its exact surnames after ten of them."""
    if offset >= total:
        return SearchPage(total, [], more)
    limit = min(limit, total - offset)
    # The tiers' expressions, best first; the last one is the matches meeting none of the
    # ranking conditions (the only one when the query has no name word).
    expr = plan.expression()
    conditions = plan.tiers() if plan.ranks_exact else []
    tiers = [
        backend.tier(expr, condition, conditions[:n], expansions)
        for n, condition in enumerate(conditions)
    ]
    tiers.append(backend.tier(expr, None, conditions, expansions))
    needed = offset + limit
    if backend.postgres:
        if not conditions:
            page_sql = backend.page_tiers(1, sort=[not more or gathered])
            rows = yield page_sql, {"q0": tiers[0], "limit0": limit, "offset0": offset}
            return SearchPage(total, [_result(row, plan) for row in rows], more)
        queries: list[str] = []
        sizes: list[int] = []
        for n, tier_q in enumerate(tiers):
            queries.append(tier_q)
            if n == len(conditions):
                sizes.append(max(0, total - sum(sizes)))
                break
            counter = backend.count_gathered if n < 2 else backend.count_one
            [(size, _, _)] = yield counter, {"q0": tier_q, "cap": needed - sum(sizes)}
            sizes.append(int(size))
            if sum(sizes) >= needed:
                break
        params: dict[str, Any] = {}
        skip, wanted = offset, limit
        for n, (tier_q, size) in enumerate(zip(queries, sizes, strict=True)):
            take = max(0, min(wanted, size - skip))
            params |= {f"q{n}": tier_q, f"limit{n}": take, f"offset{n}": min(skip, size)}
            skip = max(0, skip - size)
            wanted -= take
        # The first two tiers (the surname is, or begins with, a word typed) gather in one
        # stretch of the name order: sorted, whatever their size.
        sort = [not more or n < 2 for n in range(len(queries))]
        rows = yield backend.page_tiers(len(queries), sort=sort), params
        return SearchPage(total, [_result(row, plan) for row in rows], more)
    ranked: list[int] = []
    for tier_q in tiers:
        [(_, found)] = yield backend.match_ids, {"q0": tier_q, "cap": needed - len(ranked)}
        ranked += _ids(found)
        if len(ranked) >= needed:
            break
    page = yield from _read(backend, plan, ranked[offset : offset + limit])
    return SearchPage(total, page, more)


def _read(
    backend: Backend, plan: Plan, chosen: list[int]
) -> Generator[tuple[Statement, dict[str, Any]], list[Any], list[SearchResult]]:
    """The page's practitioners, read by identifier, in the order given."""
    if not chosen:
        return []
    rows = yield backend.by_ids, {"ids": backend.id_list(chosen)}
    by_id = {row[-1]: row[:-1] for row in rows}
    return [_result(by_id[i], plan) for i in chosen if i in by_id]


def rank_by_words(plan: Plan, rows: list[tuple[int, str]]) -> list[int]:
    """Every match's identifier in rank order (`Plan.tiers`, each tier in name order), from
    (identifier, index words) rows, all of the matches: the order the word index gives tier
    by tier, at a fraction of the cost. There each tier evaluates the words typed again: a
    surname prefix of five letters or more ("9lguill"*) merges the postings of hundreds of
    surnames (FTS5), and a short prefix unions those of thousands of words (PostgreSQL's GIN:
    60 ms for "mar mar")."""
    tests = [matcher(condition) for condition in plan.tiers()]
    tiers: list[list[int]] = [[] for _ in range(len(tests) + 1)]
    for row_id, text in sorted(rows):
        padded = f" {text} "
        tier = next((n for n, test in enumerate(tests) if test(padded)), len(tests))
        tiers[tier].append(row_id)
    return [row_id for tier in tiers for row_id in tier]


def _ids(found: str | None) -> list[int]:
    """The identifiers `Backend.match_ids` gathered, in name order."""
    return sorted(map(int, found.split(","))) if found else []


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
    rpps, title, first_name, last_name, profession, encoded, matrix_id = row
    activities = w.decode_activities(encoded)
    best = max(activities, key=lambda a: _score(a, plan), default=None)
    return SearchResult(
        rpps=RppsId(rpps),
        display_name=display_name(title, first_name, last_name),
        profession=profession,
        specialty=best.specialty if best else "",
        city=best.city if best else "",
        postcode=best.postcode if best else "",
        matrix_id=matrix_id,
    )
