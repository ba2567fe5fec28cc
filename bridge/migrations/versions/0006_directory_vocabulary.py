"""Directory: the name words and the typo variants of surnames, in tables of their own.

`directory_word` lists every name word of the register (a joined run of a compound surname
with the length of its first word), so that a long prefix typed ("sanchez") is matched as the
words it begins without asking the word index to count them. `directory_typo` maps each
surname word of five letters or more, with one letter deleted, back to the word: the typo
variants no longer sit in the word index once per practitioner. Both are filled here from
the live directory; imports then rebuild them with each generation.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bridge.directory.rows import Vocabulary, words

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

_BATCH = 10_000


def upgrade() -> None:
    word = op.create_table(
        "directory_word",
        sa.Column("word", sa.String(200), nullable=False),
        sa.Column("head", sa.SmallInteger(), nullable=False),
        sa.PrimaryKeyConstraint("word", name="pk_directory_word"),
        sqlite_with_rowid=False,
    )
    typo = op.create_table(
        "directory_typo",
        sa.Column("variant", sa.String(200), nullable=False),
        sa.Column("word", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("variant", "word", name="pk_directory_typo"),
        sqlite_with_rowid=False,
    )
    bind = op.get_bind()
    vocabulary = Vocabulary()
    for (last,) in bind.execute(sa.text("SELECT DISTINCT last_name FROM directory_practitioner")):
        vocabulary.add_surname(" ".join(words(last)))
    for (first,) in bind.execute(sa.text("SELECT DISTINCT first_name FROM directory_practitioner")):
        vocabulary.add_first(" ".join(words(first)))
    rows = [{"word": w, "head": h} for w, h in sorted(vocabulary.words.items())]
    for start in range(0, len(rows), _BATCH):
        op.bulk_insert(word, rows[start : start + _BATCH])
    variants = [{"variant": v, "word": w} for v, w in sorted(vocabulary.typo_rows())]
    for start in range(0, len(variants), _BATCH):
        op.bulk_insert(typo, variants[start : start + _BATCH])


def downgrade() -> None:
    op.drop_table("directory_typo")
    op.drop_table("directory_word")
