"""The directory's `:name` SQL, numbered for asyncpg the one way searches and imports share."""

from __future__ import annotations

from bridge.directory.params import numbered


def test_names_are_numbered_in_order_of_first_use_and_casts_are_kept() -> None:
    sql = "SELECT :q0::tsquery, :limit0 WHERE x = :q0 AND y = :rpps OFFSET :offset0"
    assert numbered(sql) == (
        "SELECT $1::tsquery, $2 WHERE x = $1 AND y = $3 OFFSET $4",
        ("q0", "limit0", "rpps", "offset0"),
    )


def test_sql_without_parameters_is_unchanged() -> None:
    assert numbered("SELECT 1::int") == ("SELECT 1::int", ())
