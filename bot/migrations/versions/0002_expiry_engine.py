"""Expiry engine: retry bookkeeping and attachments on the schedule, and back-fill gaps.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

`expiry_schedule` gains what the redaction worker needs to survive errors (attempts, the
next attempt time, the outcome) and the attachments' mxc URIs. `expiry_gaps` remembers
stretches of a room's timeline that sync skipped (limited timelines) until they are read
back, so a crash between the sync and the back-fill loses nothing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("expiry_schedule") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("next_try_ms", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("media", sa.Text(), nullable=True))
        batch.add_column(sa.Column("outcome", sa.String(32), nullable=True))
    op.execute("UPDATE expiry_schedule SET next_try_ms = due_ms")
    op.create_index("ix_expiry_schedule_ready", "expiry_schedule", ["done_ms", "next_try_ms"])
    op.create_table(
        "expiry_gaps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("room_id", sa.String(255), nullable=False),
        sa.Column("from_token", sa.Text(), nullable=True),
        sa.Column("until_ts", sa.BigInteger(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_expiry_gaps"),
    )


def downgrade() -> None:
    op.drop_table("expiry_gaps")
    op.drop_index("ix_expiry_schedule_ready", table_name="expiry_schedule")
    with op.batch_alter_table("expiry_schedule") as batch:
        batch.drop_column("outcome")
        batch.drop_column("media")
        batch.drop_column("next_try_ms")
        batch.drop_column("attempts")
