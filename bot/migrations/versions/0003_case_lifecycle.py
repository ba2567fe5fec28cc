"""Case lifecycle: ``!case new`` requests (exactly once) and per-case marks.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04

`case_requests` records each ``!case new`` before its room is created and the room id as
soon as it exists, so an interrupted command resumes instead of opening a second room.
`case_marks` remembers when a case was exported and when its members were warned that
messages are about to disappear.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "case_requests",
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("requester", sa.String(255), nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.Column("room_id", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name="pk_case_requests"),
    )
    op.create_table(
        "case_marks",
        sa.Column("room_id", sa.String(255), nullable=False),
        sa.Column("exported_ms", sa.BigInteger(), nullable=True),
        sa.Column("warned_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("room_id", name="pk_case_marks"),
    )


def downgrade() -> None:
    op.drop_table("case_marks")
    op.drop_table("case_requests")
