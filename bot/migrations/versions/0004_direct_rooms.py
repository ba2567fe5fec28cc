"""Direct rooms: each practitioner's direct conversation with the bot, by identifier.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

An export is delivered in the requester's direct conversation with the bot. The bot used to
look for it among the rooms whose members it held in memory; after a restart an idle
conversation has none loaded yet, so a second one was opened. The room is now recorded when
the bot joins it (an invitation marked direct) or opens it.
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
        "direct_rooms",
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("room_id", sa.String(255), nullable=False),
        sa.Column("recorded_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_direct_rooms"),
    )


def downgrade() -> None:
    op.drop_table("direct_rooms")
