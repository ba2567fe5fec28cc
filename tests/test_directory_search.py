"""Searching the directory the way doctors type, on SQLite and PostgreSQL (same results)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bridge.db import Database
from bridge.directory import search as search_module
from bridge.directory.importer import import_directory
from bridge.directory.query import Expr, Node, Term, matcher
from bridge.directory.rows import city_key, words
from bridge.directory.search import SearchPage
from tests.directory_support import BACKENDS, demo_extract, directory_database, search

ANNE_SOPHIE = "Dr Anne-Sophie MARTIN-LÉGER"  # SM04 cardiology, Lyon 2e
PAUL_MARTIN = "Dr Paul MARTIN"  # SM04 cardiology, Lyon 6e
JEAN_DUPONT = "Dr Jean DUPONT"  # SM54 general practice, Marseille 1er
QUERIES = [
    "mart leg",
    "LÉGER Martin",
    "martin",
    "cardio lyon",
    "cardiologue 69",
    "médecin généraliste marseille",
    "MG 13",
    "rhône",
    "69002",
    "dupon",
    "10009999995",
    "infirmier paris 15",
    "kiné",
]


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=BACKENDS)
async def directory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Database]:
    folder = tmp_path_factory.mktemp(f"directory-{request.param}")
    async with directory_database(request.param, folder) as db:
        await import_directory(db, demo_extract(folder, lines=4000, seed=11))
        yield db


async def names(db: Database, query: str, limit: int = 50) -> list[str]:
    return [r.display_name for r in (await search(db, query, limit=limit)).results]


async def test_name_prefixes_in_any_order_with_or_without_accents(directory: Database) -> None:
    for query in ("mart leg", "LÉGER Martin", "martin-leger anne", "MARTIN LEGER"):
        assert ANNE_SOPHIE in await names(directory, query), query
    assert (await search(directory, "martin leger")) == (await search(directory, "Martin-Léger"))


async def test_exact_name_words_rank_before_prefixes(directory: Database) -> None:
    page = await search(directory, "martin", limit=200)
    exact = ["martin" in words(r.display_name) for r in page.results]
    assert (exact[0] and not exact[-1]) or all(exact)
    assert exact == sorted(exact, reverse=True)  # every exact match before any prefix match
    assert PAUL_MARTIN in [
        r.display_name for r in page.results if "martin" in words(r.display_name)
    ]


async def test_specialty_and_city_narrow_the_results(directory: Database) -> None:
    page = await search(directory, "cardio lyon", limit=50)
    shown = [r.display_name for r in page.results]
    assert ANNE_SOPHIE in shown and PAUL_MARTIN in shown
    for result in page.results:
        assert result.specialty == "Cardiologie et maladies vasculaires"
        assert city_key(result.city) == "lyon" or "lyon" in words(result.display_name)
    cardio = await search(directory, "cardiologue")
    department = await search(directory, "cardio 69")
    assert cardio.total > department.total >= page.total > 0
    assert (await search(directory, "cardiologue lyon")).total == page.total


async def test_common_words_map_to_the_register_specialties(directory: Database) -> None:
    assert JEAN_DUPONT in await names(directory, "médecin généraliste marseille")
    assert JEAN_DUPONT in await names(directory, "MG 13")
    for result in (await search(directory, "MG 13")).results:
        assert result.specialty == "Médecine générale"
        assert result.postcode.startswith("13")


async def test_places_by_postcode_department_name_and_arrondissement(directory: Database) -> None:
    assert ANNE_SOPHIE in await names(directory, "69002")
    assert ANNE_SOPHIE in await names(directory, "cardio rhône")
    for result in (await search(directory, "paris 15", limit=20)).results:
        assert result.postcode == "75015"


async def test_rpps_and_adeli_numbers_find_one_practitioner(directory: Database) -> None:
    page = await search(directory, "10009999995")
    assert [r.display_name for r in page.results] == [ANNE_SOPHIE]
    assert page.results[0].matrix_id is None
    adeli = next(
        r.rpps
        for r in (await search(directory, "infirmier", limit=200)).results
        if len(r.rpps) == 9
    )
    assert [r.rpps for r in (await search(directory, adeli)).results] == [adeli]
    assert (await search(directory, "12345")).total == 0
    assert (await search(directory, "810009999995 cardio lyon")).total == 1
    assert (await search(directory, "10009999995 dupont")).total == 0
    assert (await search(directory, "10009999995 10008888884")).total == 0
    assert await search(directory, "10009999995", offset=1) == SearchPage(1, [])


async def test_limit_offset_and_total(directory: Database) -> None:
    whole = await search(directory, "ma", limit=40)
    assert whole.total > 40
    pages = [await search(directory, "ma", limit=10, offset=o) for o in (0, 10, 20, 30)]
    assert [r for p in pages for r in p.results] == whole.results
    assert {p.total for p in pages} == {whole.total}
    assert (await search(directory, "ma", offset=whole.total)).results == []
    assert (await search(directory, "")).total == 0
    with pytest.raises(ValueError):
        await search(directory, "ma", limit=0)


@pytest.mark.postgres
async def test_both_back_ends_give_identical_pages(tmp_path: Path) -> None:
    extract = demo_extract(tmp_path, lines=2000, seed=13)
    pages = {}
    for backend in BACKENDS:
        async with directory_database(backend, tmp_path) as db:
            await import_directory(db, extract)
            # Offsets inside the first page, across the ranking tiers' boundaries ("martin":
            # exact surnames, then surnames beginning with it, then the rest) and past the
            # count's cap.
            pages[backend] = [
                await search(db, q, limit=20, offset=offset)
                for q in QUERIES
                for offset in (3, 17, 40)
            ]
    assert pages["sqlite"] == pages["postgres"]
    assert sum(p.total for p in pages["sqlite"]) > 100
    assert sum(len(p.results) for p in pages["sqlite"]) > 150


def test_an_expression_is_met_by_words_as_the_word_index_meets_it() -> None:
    def matches(expr: Expr, words: str) -> bool:
        return matcher(expr)(f" {words} ")  # as the ranking pads the stored words

    words = "9p10 9lmartinleger martin leger  anne sophie"
    assert matches(Term("mart", prefix=True), words)
    assert not matches(Term("mart"), words)  # a whole word only
    assert matches(Term("martin"), words) and matches(Term("9lmartin", prefix=True), words)
    assert not matches(Term("9lmartin"), words)
    either = Node("or", (Term("9p60"), Term("sop", prefix=True)))
    assert matches(Node("and", (either, Term("leger"))), words)
    assert not matches(Node("and", (either, Term("paul", prefix=True))), words)
    assert not matches(Node("or", (Term("9p60"), Term("x", prefix=True))), words)


async def test_ranking_from_the_matches_words_is_the_word_index_ranking(
    directory: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Up to the count's cap, the matches are ranked from their own index words; the index
    asked tier by tier must give the same pages, within and across the tiers."""
    queries = ["martin", "mart", "ma", "le", "ma cardio", "dupon", "mar mar", "jean", "b"]
    offsets = (0, 7, 30)

    async def pages() -> list[SearchPage]:
        return [await search(directory, q, limit=10, offset=o) for q in queries for o in offsets]

    from_words = await pages()
    monkeypatch.setattr(search_module, "WORDS_RANKED", 0)  # every page tier by tier
    assert await pages() == from_words
    ranked = [p for p in from_words if 0 < p.total < search_module.COUNT_CAP]
    assert len(ranked) >= 12 and sum(len(p.results) for p in ranked) > 100


async def test_a_directory_from_before_the_long_prefix_index_finds_the_same(
    tmp_path: Path,
) -> None:
    # A database imported under the earlier index (prefixes of 2-4 letters, no word or typo
    # tables) is rebuilt by the migrations from its stored words and names: the same pages,
    # long prefixes and typos included, and the 5-6 letter prefixes indexed.
    from alembic import command
    from sqlalchemy import Connection, text

    from bridge.db import alembic_config

    def move(connection: Connection, where: str) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        if where == "down":
            command.downgrade(config, "0004")
        else:
            command.upgrade(config, "head")

    async def fts_definition(db: Database) -> str:
        async with db.engine.connect() as connection:
            sql = "SELECT sql FROM sqlite_master WHERE name = 'directory_fts'"
            return str((await connection.execute(text(sql))).scalar_one())

    queries = ["marie", "claire dub", "martin", "cardio lyon", "franc", "dupon", "christine"]
    queries += ["dupnot", "lefevr", "matrin", "bernadr"]
    async with directory_database("sqlite", tmp_path) as db:
        await import_directory(db, demo_extract(tmp_path, lines=1500, seed=3))
        before = [await search(db, q, limit=20) for q in queries]
        async with db.engine.begin() as connection:
            await connection.run_sync(move, "down")
        assert "prefix='2 3 4'" in await fts_definition(db)
        async with db.engine.begin() as connection:
            await connection.run_sync(move, "up")
        assert "prefix='2 3 4 5 6'" in await fts_definition(db)
        assert [await search(db, q, limit=20) for q in queries] == before
    assert sum(p.total for p in before) > 20
    assert all(p.total for p in before[-4:])  # the typos found someone


async def test_long_prefixes_matched_as_their_words_find_the_same_pages(
    directory: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite matches a prefix longer than its prefix indexes as the index words it begins;
    # the pages must be those of the prefix itself, typos included.
    queries = [*QUERIES, "christine", "mart jean", "dupont jean 13", "marie", "lefevr", "dupnot"]
    monkeypatch.setattr(search_module, "LONGEST_PREFIX", 99)  # never expanded
    as_prefixes = [await search(directory, q, limit=20, offset=1) for q in queries]
    monkeypatch.setattr(search_module, "LONGEST_PREFIX", 1)  # expanded from two letters on
    as_words = [await search(directory, q, limit=20, offset=1) for q in queries]
    monkeypatch.setattr(search_module, "MAX_EXPANSION", 2)  # too many words: left as prefixes
    capped = [await search(directory, q, limit=20, offset=1) for q in queries]
    assert as_words == as_prefixes == capped
    assert sum(p.total for p in as_words) > 100
