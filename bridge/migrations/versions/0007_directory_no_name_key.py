"""Directory: the stored practitioner no longer carries its name key.

`name_key` (folded last name, first name, RPPS) puts the register in name order while an
import numbers the practitioners; once they are numbered, the table's order is its ids, and
no query ever read the column. It was about a tenth of the table, written at every import.
Dropping it rewrites the SQLite table once (PostgreSQL only marks the column dropped).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Plain SQL on both: SQLite drops a column itself since 3.35, no table copy needed.
    op.execute("ALTER TABLE directory_practitioner DROP COLUMN name_key")


def downgrade() -> None:
    op.add_column(
        "directory_practitioner",
        sa.Column("name_key", sa.Text(), nullable=False, server_default=""),
    )
    # The key as imports wrote it, near enough for the order it served (not read back).
    op.execute(
        "UPDATE directory_practitioner SET name_key = "
        "lower(last_name) || char(9) || lower(first_name) || char(9) || rpps"
        if op.get_bind().dialect.name == "sqlite"
        else "UPDATE directory_practitioner SET name_key = "
        "lower(last_name) || chr(9) || lower(first_name) || chr(9) || rpps"
    )
