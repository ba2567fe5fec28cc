"""Directory (SQLite): name prefixes of 5 and 6 letters indexed too.

A first name of five letters or more typed whole ("marie", "claire", "pierre") is matched as a
prefix, and without an index of that length FTS5 merges the postings of every word it begins
(marie, marielle, mariette, …) at each evaluation: the slowest name searches. The index is
rebuilt from the stored words; imports then clone this definition. PostgreSQL is unchanged
(its GIN index answers prefixes of any length).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

_FTS = (
    "CREATE VIRTUAL TABLE directory_fts USING fts5("
    "tokens, content='', detail=none, columnsize=0, prefix='{prefix}', "
    "tokenize='unicode61 remove_diacritics 0')"
)


def _rebuild(prefix: str) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP TABLE directory_fts")
    op.execute(_FTS.format(prefix=prefix))
    op.execute("INSERT INTO directory_fts (directory_fts, rank) VALUES ('automerge', 0)")
    op.execute(
        "INSERT INTO directory_fts (rowid, tokens) SELECT id, tokens FROM directory_practitioner"
    )
    op.execute("INSERT INTO directory_fts (directory_fts) VALUES ('optimize')")


def upgrade() -> None:
    _rebuild("2 3 4 5 6")


def downgrade() -> None:
    _rebuild("2 3 4")
