"""Admin: audit log, accounts opened by the bridge, activation links, console sessions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "admin_audit",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target", sa.String(255), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_admin_audit"),
    )
    op.create_index("ix_admin_audit_at", "admin_audit", ["at"])
    op.create_table(
        "admin_account",
        sa.Column("matrix_id", sa.String(255), nullable=False),
        sa.Column("rpps", sa.String(16), nullable=True),
        sa.Column("server_name", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("matrix_id", name="pk_admin_account"),
        sa.CheckConstraint("state IN ('pending', 'active', 'locked', 'deactivated')", name="state"),
    )
    op.create_index("ix_admin_account_rpps", "admin_account", ["rpps"])
    op.create_table(
        "admin_activation",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("matrix_id", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name="pk_admin_activation"),
    )
    op.create_index("ix_admin_activation_matrix_id", "admin_activation", ["matrix_id"])
    op.create_table(
        "admin_console_session",
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name="pk_admin_console_session"),
    )


def downgrade() -> None:
    op.drop_table("admin_console_session")
    op.drop_index("ix_admin_activation_matrix_id", table_name="admin_activation")
    op.drop_table("admin_activation")
    op.drop_index("ix_admin_account_rpps", table_name="admin_account")
    op.drop_table("admin_account")
    op.drop_index("ix_admin_audit_at", table_name="admin_audit")
    op.drop_table("admin_audit")
