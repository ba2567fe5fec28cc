"""The bot's pending identity resets, as it last reported them (shown in the console).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "identity_reset_report",
        sa.Column("reporter", sa.String(64), nullable=False),
        sa.Column("bot_user_id", sa.String(255), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("reporter", name="pk_identity_reset_report"),
    )
    op.create_table(
        "identity_reset",
        sa.Column("reporter", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("master_key", sa.String(64), nullable=False),
        sa.Column("pinned_master_key", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("reporter", "user_id", name="pk_identity_reset"),
    )


def downgrade() -> None:
    op.drop_table("identity_reset")
    op.drop_table("identity_reset_report")
