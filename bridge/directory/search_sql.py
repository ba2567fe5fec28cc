"""The SQL of a directory search, for SQLite (FTS5) and PostgreSQL (tsquery): the statements
`bridge.directory.search` drives, built once per back end with `:name` parameters.

Both back ends get the same full-text expressions and ranking tiers from one template, so the
same plan returns the same practitioners in the same order on either. A query is evaluated
once, for its first matches up to the count's cap, and the page is read by identifier (see
`search._ranked`). Past the cap, PostgreSQL reads a page as UNION ALL of the ranking tiers,
each scanned or sorted in id order, and SQLite the identifiers of each tier as far as the page
needs. Both look RPPS numbers up in the register's own index.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from bridge.directory.params import numbered
from bridge.directory.query import Expr, to_fts5, to_tsquery

COLUMNS = "p.rpps, p.title, p.first_name, p.last_name, p.profession, p.activities, l.matrix_id"
"""The columns of a result row, in the order `search._result` reads them."""
LONGEST_PREFIX = 6
"""The longest prefix length FTS5 indexes (migration 0005)."""
MAX_EXPANSION = 300
"""A longer prefix beginning more index words than this is left to FTS5 as a prefix."""
WORD = "directory_word"
TYPO = "directory_typo"
Expansions = Mapping[str, Sequence[str]]


class Statement:
    """One SQL text with `:name` parameters, ready for either driver's own call."""

    def __init__(self, sql: str, postgres: bool) -> None:
        self.postgres = postgres
        self.names: tuple[str, ...] = ()
        if postgres:
            sql, self.names = numbered(sql)
        self.sql = sql

    async def fetch(self, driver: Any, params: dict[str, Any]) -> list[Any]:
        if self.postgres:
            return list(await driver.fetch(self.sql, *(params[n] for n in self.names)))
        return list(await driver.execute_fetchall(self.sql, params))


class Backend:
    """The SQL of one back end: the first matches, one ordered page.

    Past the count's cap, a PostgreSQL page is one statement even with several ranking
    tiers: the exact-name matches and the other matches are each scanned in index order, with
    limits and offsets computed from the counts, and glued with UNION ALL. Round trips, not
    the index, dominate small queries, so these statements go straight to the driver (one
    thread hop with aiosqlite, one network round trip with asyncpg) rather than through
    SQLAlchemy's result machinery, which costs several hops per statement.
    """

    def __init__(self, dialect: str) -> None:
        postgres = self.postgres = dialect == "postgresql"
        if postgres:
            where = "WHERE p.tokens @@ CAST({q} AS tsquery)"
            matches = "SELECT p.id FROM directory_practitioner p " + where
            # Capped as on SQLite: the planner then stops the scan of the matches past the
            # cap ("mar mar" counted 210 000 rows, 130 ms, to show "500+").
            count = (
                f"SELECT count(*) FROM (SELECT 1 FROM directory_practitioner p {where} "
                "LIMIT :cap) c"
            )
        else:
            matches = "SELECT rowid AS id FROM directory_fts WHERE directory_fts MATCH {q}"
            count = (
                "SELECT count(*) FROM (SELECT 1 FROM directory_fts WHERE directory_fts MATCH {q} "
            )
            # Counting stops past the cap: a broad query ("médecin 75") matches hundreds of
            # thousands of practitioners, and counting them all was most of its time.
            count += "LIMIT :cap) c"
        tier = "SELECT * FROM (SELECT {n} AS tier, t.id FROM (" + matches + ") t "
        tier += "ORDER BY t.id LIMIT {limit} OFFSET {offset}) t{n}"
        select = (
            f"SELECT {COLUMNS} FROM ({{tiers}}) m "
            "JOIN directory_practitioner p ON p.id = m.id "
            "LEFT JOIN directory_link l ON l.rpps = p.rpps AND l.visible "
            "ORDER BY m.tier, m.id"
        )
        self._tier_sql, self._select = tier, select
        self._pages: dict[tuple[int, tuple[bool, ...]], Statement] = {}
        generation = "(SELECT max(id) FROM directory_import)"
        self.count_one = Statement(f"SELECT ({count.format(q=':q0')}), 0, {generation}", postgres)
        # The surname tiers gather in one stretch of the name order, which is the table's
        # order: a capped count the planner answers by reading the table until the cap is
        # reached reads most of it when that stretch is near the end ("ro": 300 ms). Their
        # matches are gathered from the index first (a CTE is planned without the cap).
        if postgres:
            gathered = (
                "WITH m AS MATERIALIZED (SELECT 1 FROM directory_practitioner p "
                + where.format(q=":q0")
                + ") SELECT count(*) FROM (SELECT 1 FROM m LIMIT :cap) c"
            )
        else:
            gathered = count.format(q=":q0")
        self.count_gathered = Statement(f"SELECT ({gathered}), 0, {generation}", postgres)
        self.generation = Statement(f"SELECT {generation}", postgres)
        # The first `cap` matches (`search._ranked`), valid on both back ends; each uses
        # the cheaper one. SQLite: the import's id and the identifiers in one row (a row per
        # match costs more than their words are worth unless ranking needs them:
        # `words_by_ids`). PostgreSQL: identifier, words and import's id per match (GIN
        # evaluates a query whole, so a second evaluation costs more than carrying them).
        aggregate = "string_agg(CAST(id AS text), ',')" if postgres else "group_concat(id)"
        self.match_ids = Statement(
            f"SELECT {generation}, {aggregate} FROM ({matches.format(q=':q0')} "
            "ORDER BY id LIMIT :cap) f",
            postgres,
        )
        words = "array_to_string(tsvector_to_array(p.tokens), ' ')" if postgres else "p.tokens"
        found = (
            f"{where.format(q=':q0')} LIMIT :cap"
            if postgres
            else f"WHERE p.id IN ({matches.format(q=':q0')} ORDER BY id LIMIT :cap)"
        )
        self.match_words = Statement(
            f"SELECT p.id, {words}, {generation} FROM directory_practitioner p {found}", postgres
        )
        in_ids = (
            "= ANY(CAST(:ids AS integer[]))"
            if postgres
            else "IN (SELECT value FROM json_each(:ids))"
        )
        self.words_by_ids = Statement(
            f"SELECT p.id, {words} FROM directory_practitioner p WHERE p.id {in_ids}", postgres
        )
        self.by_ids = Statement(
            f"SELECT {COLUMNS}, p.id FROM directory_practitioner p "
            "LEFT JOIN directory_link l ON l.rpps = p.rpps AND l.visible "
            f"WHERE p.id {in_ids}",
            postgres,
        )
        by_id = (
            f"SELECT {COLUMNS}, {generation} FROM directory_practitioner p "
            "LEFT JOIN directory_link l ON l.rpps = p.rpps AND l.visible WHERE p.rpps = :rpps"
        )
        also = (
            " AND p.tokens @@ CAST(:q0 AS tsquery)"
            if postgres
            else " AND p.id IN (SELECT rowid FROM directory_fts WHERE directory_fts MATCH :q0)"
        )
        self.by_id = Statement(by_id, postgres)
        self.by_id_and_words = Statement(by_id + also, postgres)
        self.places = Statement("SELECT key FROM directory_place", postgres)
        self._vocabulary: dict[int, Statement] = {}
        self._typos: dict[int, Statement] = {}

    def id_list(self, ids: list[int]) -> Any:
        """Identifiers as the `:ids` parameter: an array for asyncpg, JSON for SQLite."""
        return list(ids) if self.postgres else json.dumps(ids)

    def render(self, expr: Expr, expansions: Expansions | None = None) -> str:
        return to_tsquery(expr) if self.postgres else to_fts5(expr, expansions)

    def vocabulary(self, count: int) -> Statement:
        """SQLite: the name words beginning each of `count` prefixes (`:p0`/`:e0`/`:h0`, ...:
        the prefix, the first string after all its words, its length), with its number.

        Only prefixes of up to LONGEST_PREFIX letters have their own index; a longer one
        ("christine", "francois") makes FTS5 merge the posting lists of every word it begins
        at each evaluation, tens of milliseconds on the whole register. Its words, looked up
        once in `directory_word`, are matched instead as whole words. A joined run whose
        first word is at least as long as the prefix ("sanchezadam" for "sanchez") is left
        out: whoever has it has that first word too, which begins with the prefix.
        """
        found = self._vocabulary.get(count)
        if found is None:
            parts = " UNION ALL ".join(
                f"SELECT {n}, word FROM (SELECT word FROM {WORD} "
                f"WHERE word >= :p{n} AND word < :e{n} AND head < :h{n} "
                f"LIMIT {MAX_EXPANSION + 1})"
                for n in range(count)
            )
            found = self._vocabulary[count] = Statement(parts, postgres=False)
        return found

    def typo_lookup(self, count: int) -> Statement:
        """The surname words one letter away from `count` variants (`:v0`, ...), with the
        variant found."""
        found = self._typos.get(count)
        if found is None:
            marks = ", ".join(f":v{n}" for n in range(count))
            sql = f"SELECT variant, word FROM {TYPO} WHERE variant IN ({marks})"
            found = self._typos[count] = Statement(sql, self.postgres)
        return found

    def tier(
        self,
        expr: Expr,
        condition: Expr | None,
        earlier: list[Expr],
        expansions: Expansions | None = None,
    ) -> str:
        """`expr`, meeting `condition` (if any), meeting none of the `earlier` conditions."""

        def render(e: Expr) -> str:
            return self.render(e, expansions)

        if self.postgres:
            text = f"({render(expr)})" + (f" & ({render(condition)})" if condition else "")
            return text + "".join(f" & !({render(e)})" for e in earlier)
        text = f"({render(expr)}" + (f" AND {render(condition)}" if condition else "") + ")"
        if not earlier:
            return text
        return f"{text} NOT ({' OR '.join(render(e) for e in earlier)})"

    def page_tiers(self, count: int, *, sort: Sequence[bool] = ()) -> Statement:
        """One page over `count` tiers, glued with UNION ALL (PostgreSQL, past the count's
        cap), built once per shape.

        `sort` (PostgreSQL, per tier): sort the tier's matches rather than walk the table in
        `id` order until the page is full. The walk suits matches spread over the register
        (a specialty in a department); it reads most of the table for a rare match the
        planner overestimates (a typo's variants), and for matches gathered in one stretch
        of the name order (surnames beginning with "ro" sit near the end: 1.5 million rows
        walked past, 400 ms).
        """
        flags = tuple(sort) if self.postgres else ()
        key = (count, flags)
        found = self._pages.get(key)
        if found is None:
            parts = " UNION ALL ".join(
                (
                    self._tier_sql.replace("ORDER BY t.id ", "ORDER BY t.id + 0 ")
                    if n < len(flags) and flags[n]
                    else self._tier_sql
                ).format(n=n, q=f":q{n}", limit=f":limit{n}", offset=f":offset{n}")
                for n in range(count)
            )
            found = self._pages[key] = Statement(self._select.format(tiers=parts), self.postgres)
        return found
