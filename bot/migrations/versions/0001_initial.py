"""Initial schema: case rooms, processed commands, audit, expiry schedule.

Revision ID: 0001
Revises:
Create Date: 2025-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "case_rooms",
        sa.Column("room_id", sa.String(255), nullable=False),
        sa.Column("label", sa.String(128), nullable=False),
        sa.Column("creator", sa.String(255), nullable=False),
        sa.Column("ttl_seconds", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("closed_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("room_id", name="pk_case_rooms"),
    )
    op.create_table(
        "processed_commands",
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("room_id", sa.String(255), nullable=False),
        sa.Column("command", sa.String(64), nullable=False),
        sa.Column("claimed_ms", sa.BigInteger(), nullable=False),
        sa.Column("finished_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name="pk_processed_commands"),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("sender", sa.String(255), nullable=False),
        sa.Column("room_id", sa.String(255), nullable=False),
        sa.Column("command", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit"),
    )
    op.create_index("ix_audit_ts_ms", "audit", ["ts_ms"])
    op.create_table(
        "expiry_schedule",
        sa.Column("room_id", sa.String(255), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("origin_server_ts", sa.BigInteger(), nullable=False),
        sa.Column("due_ms", sa.BigInteger(), nullable=False),
        sa.Column("done_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("room_id", "event_id", name="pk_expiry_schedule"),
    )
    op.create_index("ix_expiry_schedule_pending", "expiry_schedule", ["done_ms", "due_ms"])


def downgrade() -> None:
    op.drop_index("ix_expiry_schedule_pending", table_name="expiry_schedule")
    op.drop_table("expiry_schedule")
    op.drop_index("ix_audit_ts_ms", table_name="audit")
    op.drop_table("audit")
    op.drop_table("processed_commands")
    op.drop_table("case_rooms")
