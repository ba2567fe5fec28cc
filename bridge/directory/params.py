"""The directory's SQL is written once with `:name` parameters; asyncpg wants `$1`, `$2`...

The directory talks to the drivers directly where speed counts (searches, the PostgreSQL bulk
import), so the rewrite SQLAlchemy would do is done here, the same way for both.
"""

from __future__ import annotations

import re

_PARAM = re.compile(r"(?<!:):([a-z_][a-z0-9_]*)")
"""A `:name` parameter; `::type` casts are left alone."""


def numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """`sql` with each `:name` as `$n` (a name used twice keeps its number), and the names in
    the order of their numbers (how to lay the values out)."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return _PARAM.sub(number, sql), tuple(names)
