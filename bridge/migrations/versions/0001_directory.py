"""Practitioner directory: the register's practitioners, its search index, Matrix links, imports.

`directory_practitioner`, `directory_place` (and on SQLite the `directory_fts` index) are
*generations*: an import builds `<name>_next` copies with the same definition, then swaps them
in within one transaction (bridge.directory.generations). Their indexes are rebuilt after the
bulk load, under these names, at the swap.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    # The words that find the practitioner (bridge.directory.rows): indexed by a GIN index on
    # PostgreSQL; on SQLite kept as text and indexed by the FTS5 table below.
    search_columns: list[sa.Column[object]] = [
        sa.Column(
            "tokens",
            postgresql.TSVECTOR() if dialect == "postgresql" else sa.Text(),
            nullable=False,
        )
    ]
    op.create_table(
        "directory_practitioner",
        # Position in name order (folded last name, first name, RPPS): pages come out of the
        # search index already sorted, without sorting thousands of matches per query.
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("rpps", sa.String(16), nullable=False),
        sa.Column("id_type", sa.String(2), nullable=False),
        sa.Column("last_name", sa.Text(), nullable=False),
        sa.Column("first_name", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("profession_code", sa.String(8), nullable=False),
        sa.Column("profession", sa.Text(), nullable=False),
        # Every activity line of the practitioner, encoded (bridge.directory.rows): one row per
        # practitioner holds all that a result shows, so a page is one indexed read.
        sa.Column("activities", sa.Text(), nullable=False),
        # Folded last name, tab, first name, tab, RPPS: the order of `id`.
        sa.Column("name_key", sa.Text(), nullable=False),
        *search_columns,
        sa.PrimaryKeyConstraint("id", name="pk_directory_practitioner"),
    )
    # A separate index, not an inline constraint: imports build it once after loading.
    op.create_index(
        "uq_directory_practitioner_rpps", "directory_practitioner", ["rpps"], unique=True
    )
    if dialect == "postgresql":
        op.create_index(
            "ix_directory_practitioner_tokens",
            "directory_practitioner",
            ["tokens"],
            postgresql_using="gin",
        )
    else:
        # Contentless, no positions: the index only answers "which practitioners have all
        # these words"; the rows live in directory_practitioner under the same id. Prefixes
        # of 2 to 4 letters are indexed too: otherwise "ma" or "jean" as a prefix merges the
        # postings of every word they begin, hundreds of milliseconds per search.
        op.execute(
            "CREATE VIRTUAL TABLE directory_fts USING fts5("
            "tokens, content='', detail=none, columnsize=0, prefix='2 3 4', "
            "tokenize='unicode61 remove_diacritics 0')"
        )
    op.create_table(
        "directory_place",
        # Folded city names present in the register ("saint etienne"): how a query word is
        # recognised as a place rather than a name.
        sa.Column("key", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_directory_place"),
    )
    op.create_table(
        "directory_link",
        sa.Column("rpps", sa.String(16), nullable=False),
        sa.Column("matrix_id", sa.String(255), nullable=False),
        sa.Column("visible", sa.Boolean(), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("rpps", name="pk_directory_link"),
        sa.UniqueConstraint("matrix_id", name="uq_directory_link_matrix_id"),
    )
    op.create_table(
        "directory_import",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("practitioners", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("warnings", sa.Integer(), nullable=False),
        sa.Column("new_count", sa.Integer(), nullable=False),
        sa.Column("changed_count", sa.Integer(), nullable=False),
        sa.Column("disappeared_count", sa.Integer(), nullable=False),
        sa.Column("initial", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_directory_import"),
    )
    op.create_table(
        "directory_change",
        # Who appeared, changed or disappeared at each import. Disappeared practitioners are
        # struck off (or retired): the admin locks their accounts from this list.
        sa.Column("import_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("rpps", sa.String(16), nullable=False),
        sa.Column("last_name", sa.Text(), nullable=False),
        sa.Column("first_name", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["directory_import.id"],
            name="fk_directory_change_import_id_directory_import",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("import_id", "kind", "rpps", name="pk_directory_change"),
        sa.CheckConstraint("kind IN ('new', 'changed', 'disappeared')", name="kind"),
    )


def downgrade() -> None:
    op.drop_table("directory_change")
    op.drop_table("directory_import")
    op.drop_table("directory_link")
    op.drop_table("directory_place")
    op.drop_index("uq_directory_practitioner_rpps", table_name="directory_practitioner")
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DROP TABLE directory_fts")
    else:
        op.drop_index("ix_directory_practitioner_tokens", table_name="directory_practitioner")
    op.drop_table("directory_practitioner")
